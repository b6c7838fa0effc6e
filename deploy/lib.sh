# Shared by deploy/up, deploy/down, deploy/build and tests/compose/run. Sourced, not executed.
#
# Settings (environment):
#   SKEIN_COMPOSE          the compose command: "docker compose" (v2) or "docker-compose" (v1);
#                          default: v2 when the plugin is installed, else v1.
#   SKEIN_COMPOSE_PROJECT  the compose project name (default: skein). Containers, the network
#                          and the volumes are named after it (skein_node1_1, skein_node1-data..).
#   SKEIN_IMAGE            the image tag to build and run (default: skein-node:local).
#   SKEIN_READY_TIMEOUT    seconds deploy/up waits for every node to be ready (default: 180).

SKEIN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SKEIN_DEPLOY="$SKEIN_ROOT/deploy"
SKEIN_TARGET="x86_64-unknown-linux-gnu"
SKEIN_STATIC_DIR="$SKEIN_ROOT/target/static"
SKEIN_STATIC_BIN="$SKEIN_STATIC_DIR/$SKEIN_TARGET/release"
export SKEIN_COMPOSE_PROJECT="${SKEIN_COMPOSE_PROJECT:-skein}"
export SKEIN_IMAGE="${SKEIN_IMAGE:-skein-node:local}"
SKEIN_NODES=(node1 node2 node3)
# Host ports per node: client API, HTTP.
declare -A SKEIN_CLIENT_PORT=([node1]=9650 [node2]=9660 [node3]=9670)
declare -A SKEIN_HTTP_PORT=([node1]=9652 [node2]=9662 [node3]=9672)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

# Picks the compose command once (fills the SKEIN_COMPOSE_CMD array).
detect_compose() {
    if [[ -n "${SKEIN_COMPOSE_CMD+x}" ]]; then return 0; fi
    if [[ -n "${SKEIN_COMPOSE:-}" ]]; then
        read -r -a SKEIN_COMPOSE_CMD <<<"$SKEIN_COMPOSE"
    elif docker compose version >/dev/null 2>&1; then
        SKEIN_COMPOSE_CMD=(docker compose)
    elif command -v docker-compose >/dev/null 2>&1; then
        SKEIN_COMPOSE_CMD=(docker-compose)
    else
        die "neither 'docker compose' (v2) nor 'docker-compose' (v1) is installed"
    fi
}

# compose ARGS..: runs compose on deploy/docker-compose.yml with the project name.
compose() {
    detect_compose
    "${SKEIN_COMPOSE_CMD[@]}" --project-name "$SKEIN_COMPOSE_PROJECT" \
        --file "$SKEIN_DEPLOY/docker-compose.yml" "$@"
}

require_docker() {
    command -v docker >/dev/null 2>&1 || die "the docker command is not installed"
    docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (docker info failed)"
}

# container_of SERVICE: the container id of a service of the project (empty when none).
container_of() {
    docker ps -aq \
        --filter "label=com.docker.compose.project=$SKEIN_COMPOSE_PROJECT" \
        --filter "label=com.docker.compose.service=$1" | head -n 1
}

# health_of SERVICE: starting | healthy | unhealthy | none (no health check) | absent.
health_of() {
    local id
    id="$(container_of "$1")"
    if [[ -z "$id" ]]; then echo absent; return; fi
    docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id" 2>/dev/null || echo absent
}

# probe URL: HTTP GET with the static probe (no curl needed on the host); body on stdout.
probe() {
    "$SKEIN_STATIC_BIN/skein-probe" --timeout 2 "$1"
}

# running_of SERVICE: true when the service's container is running (and not restarting).
running_of() {
    local id
    id="$(container_of "$1")"
    [[ -n "$id" ]] && [[ "$(docker inspect -f '{{.State.Running}}/{{.State.Restarting}}' "$id" 2>/dev/null)" == true/false ]]
}

# wait_ready TIMEOUT_SECS SERVICE..: until each service's container is running and its /readyz
# answers 200 from the host. /readyz is the readiness signal; the engine's health status (the
# same /readyz, probed from inside every 5 s) is shown but not waited for, so a slow health-check
# exec on a loaded machine does not hold up a ready cluster.
wait_ready() {
    local timeout="$1"; shift
    local deadline=$((SECONDS + timeout)) pending s last_report=$SECONDS
    while :; do
        pending=()
        for s in "$@"; do
            if ! running_of "$s" \
                || ! "$SKEIN_STATIC_BIN/skein-probe" --timeout 5 "http://127.0.0.1:${SKEIN_HTTP_PORT[$s]}/readyz" >/dev/null 2>&1; then
                pending+=("$s")
            fi
        done
        if ((${#pending[@]} == 0)); then
            local health=()
            for s in "$@"; do health+=("$s: $(health_of "$s")"); done
            log "ready: $* (engine health: ${health[*]})"
            return 0
        fi
        if ((SECONDS >= deadline)); then
            log "not ready after ${timeout}s: ${pending[*]}"
            for s in "${pending[@]}"; do
                log "$s: running $(running_of "$s" && echo yes || echo no), health $(health_of "$s"); /readyz: $(probe "http://127.0.0.1:${SKEIN_HTTP_PORT[$s]}/readyz" 2>&1 | tr '\n' ' ')"
            done
            return 1
        fi
        if ((SECONDS - last_report >= 10)); then
            last_report=$SECONDS
            log "waiting for ${pending[*]} to be ready ($((deadline - SECONDS))s left)"
        fi
        sleep 1
    done
}

//! `skein group list|describe|delete|reset`.

use anyhow::{anyhow, Context, Result};
use skein_client::{Admin, Client, ClientError, ErrorCode};

use super::print_stdout;
use crate::args::{GroupResetArgs, ReadFormat};
use crate::output::{
    group_describe_text, group_json, groups_json, groups_table, reset_plan_json, reset_plan_text,
};

/// Says what to do when an operation needs an empty group and the group has members.
async fn not_empty_error(admin: &Admin, group: &str, verb: &str, e: ClientError) -> anyhow::Error {
    if e.code() != Some(ErrorCode::GroupNotEmpty) {
        return anyhow!(e).context(format!("{verb} group {group}"));
    }
    let members = admin
        .describe_group(group)
        .await
        .map(|d| d.members.len().to_string())
        .unwrap_or_else(|_| "active".to_string());
    anyhow!(
        "cannot {verb} group {group}: it has {members} active members; stop them first \
         (see them with `skein group describe {group}`)"
    )
}

pub async fn list(client: &Client, format: ReadFormat) -> Result<()> {
    let groups = Admin::new(client.clone())
        .list_groups()
        .await
        .context("list groups")?;
    match format {
        ReadFormat::Json => print_stdout(&format!("{}\n", groups_json(&groups))),
        ReadFormat::Table if groups.is_empty() => {
            eprintln!("no consumer groups yet: consume with `skein consume TOPIC --group G`");
            Ok(())
        }
        ReadFormat::Table => print_stdout(&groups_table(&groups)),
    }
}

pub async fn describe(client: &Client, group: &str, format: ReadFormat) -> Result<()> {
    let d = Admin::new(client.clone())
        .describe_group(group)
        .await
        .map_err(|e| match e.code() {
            Some(ErrorCode::GroupNotFound) => {
                anyhow!("group {group} does not exist; list groups with `skein group list`")
            }
            _ => anyhow!(e).context(format!("describe group {group}")),
        })?;
    match format {
        ReadFormat::Json => print_stdout(&format!("{}\n", group_json(&d))),
        ReadFormat::Table => print_stdout(&group_describe_text(&d)),
    }
}

pub async fn delete(client: &Client, group: &str) -> Result<()> {
    let admin = Admin::new(client.clone());
    match admin.delete_group(group).await {
        Ok(()) => print_stdout(&format!("deleted group {group}\n")),
        Err(e) if e.code() == Some(ErrorCode::GroupNotFound) => Err(anyhow!(
            "group {group} does not exist; list groups with `skein group list`"
        )),
        Err(e) => Err(not_empty_error(&admin, group, "delete", e).await),
    }
}

pub async fn reset(client: &Client, a: GroupResetArgs) -> Result<()> {
    let admin = Admin::new(client.clone());
    let plan = match admin
        .reset_offsets(&a.group, &a.topics, a.strategy(), a.execute)
        .await
    {
        Ok(plan) => plan,
        Err(e) => return Err(not_empty_error(&admin, &a.group, "reset", e).await),
    };
    match a.output.output {
        ReadFormat::Json => print_stdout(&format!("{}\n", reset_plan_json(&plan))),
        ReadFormat::Table => print_stdout(&reset_plan_text(&plan)),
    }
}

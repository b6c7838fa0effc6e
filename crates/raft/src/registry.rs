//! The node's Raft groups: created, looked up and shut down here; the transport routes requests
//! through it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::Raft;
use skein_storage::LogConfig;

use crate::config::RaftConfig;
use crate::error::{Error, Result};
use crate::group::Group;
use crate::liveness::Liveness;
use crate::metadata::MetadataGroup;
use crate::partition::PartitionGroup;
use crate::state_machine::Applier;
use crate::transport::PeerPool;
use crate::types::{GroupId, MetaTypes, NodeId, PartitionTypes, SkeinTypes};

/// Where the transport delivers a request.
pub(crate) enum Route {
    Partition(Raft<PartitionTypes>),
    Metadata(Raft<MetaTypes>),
}

/// A borrowed [`Route`]: a group's openraft handle of either kind.
pub(crate) enum GroupRef<'a> {
    Partition(&'a Raft<PartitionTypes>),
    Metadata(&'a Raft<MetaTypes>),
}

impl Route {
    pub(crate) fn as_ref(&self) -> GroupRef<'_> {
        match self {
            Route::Partition(r) => GroupRef::Partition(r),
            Route::Metadata(r) => GroupRef::Metadata(r),
        }
    }
}

/// The Raft groups of one node and the connections they share.
#[derive(Debug)]
pub struct Registry {
    node: NodeId,
    config: RaftConfig,
    pool: PeerPool,
    partitions: RwLock<HashMap<GroupId, Arc<PartitionGroup>>>,
    metadata: RwLock<Option<Arc<MetadataGroup>>>,
    liveness: Liveness,
    shut_down: AtomicBool,
}

impl Registry {
    /// A registry for node `node`. Inside a Tokio runtime it starts the node's liveness task
    /// (see `liveness.rs`), which elects leaders for the node's groups and must run for them to
    /// have any; it stops with [`Registry::shutdown`].
    pub fn new(node: NodeId, config: RaftConfig) -> Result<Arc<Self>> {
        config.validate()?;
        let interval = Duration::from_millis(config.heartbeat_interval_ms);
        let registry = Arc::new_cyclic(|weak| {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(crate::liveness::run(weak.clone(), interval));
            }
            Registry {
                node,
                pool: PeerPool::new(node, config.clone()),
                liveness: Liveness::new(node, &config),
                config,
                partitions: RwLock::new(HashMap::new()),
                metadata: RwLock::new(None),
                shut_down: AtomicBool::new(false),
            }
        });
        Ok(registry)
    }

    pub(crate) fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    fn refuse_if_shut_down(&self, group: GroupId) -> Result<()> {
        if self.is_shut_down() {
            return Err(Error::Stopped {
                group,
                reason: "the node is shutting down".into(),
            });
        }
        Ok(())
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Ordering::Acquire)
    }

    /// Every local group's leader as its replica knows it (if any) and the replica's term, read
    /// from a table the groups keep up to date: cheap for thousands of groups, unlike their
    /// openraft metrics.
    pub fn leaderships(&self) -> HashMap<GroupId, (Option<NodeId>, u64)> {
        self.liveness.leaderships()
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node
    }

    /// The configuration every group uses.
    pub fn config(&self) -> &RaftConfig {
        &self.config
    }

    /// The shared peer connections.
    pub fn peers(&self) -> &PeerPool {
        &self.pool
    }

    fn exists(&self, group: GroupId) -> bool {
        self.partitions
            .read()
            .expect("invariant: registry lock is never poisoned")
            .contains_key(&group)
            || self
                .metadata
                .read()
                .expect("invariant: registry lock is never poisoned")
                .as_ref()
                .is_some_and(|m| m.id() == group)
    }

    /// Opens a group of any kind, refusing an id this node already has.
    async fn open_group<C: SkeinTypes, A: Applier<C>>(
        &self,
        group: GroupId,
        dir: &Path,
        log_config: LogConfig,
    ) -> Result<Group<C, A>>
    where
        C::R: Default,
    {
        if self.exists(group) {
            return Err(Error::GroupExists(group));
        }
        self.refuse_if_shut_down(group)?;
        Group::open(
            group,
            self.node,
            dir,
            log_config,
            &self.config,
            self.pool.clone(),
        )
        .await
    }

    /// Opens (or creates) the replica of partition group `group` in `dir` and starts it.
    pub async fn create_partition(
        &self,
        group: GroupId,
        dir: &Path,
        log_config: LogConfig,
    ) -> Result<Arc<PartitionGroup>> {
        let g = self.open_group(group, dir, log_config).await?;
        let g = Arc::new(PartitionGroup::new(g));
        let raced = {
            let mut parts = self
                .partitions
                .write()
                .expect("invariant: registry lock is never poisoned");
            match parts.entry(group) {
                std::collections::hash_map::Entry::Occupied(_) => true,
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(g.clone());
                    false
                }
            }
        };
        if raced {
            g.shutdown().await?;
            return Err(Error::GroupExists(group));
        }
        if self.is_shut_down() {
            // Opened while the registry shut down: it would run (and write) after the node
            // stopped.
            self.remove_partition(group).await?;
            return self.refuse_if_shut_down(group).map(|()| g);
        }
        self.liveness.watch_group(group, g.raft().server_metrics());
        Ok(g)
    }

    /// The partition group `group`, if this node has a replica of it.
    pub fn partition(&self, group: GroupId) -> Option<Arc<PartitionGroup>> {
        self.partitions
            .read()
            .expect("invariant: registry lock is never poisoned")
            .get(&group)
            .cloned()
    }

    /// Stops partition group `group` and forgets it (its files stay).
    pub async fn remove_partition(&self, group: GroupId) -> Result<()> {
        let g = self
            .partitions
            .write()
            .expect("invariant: registry lock is never poisoned")
            .remove(&group)
            .ok_or(Error::GroupNotFound(group))?;
        g.shutdown().await
    }

    /// Opens (or creates) the metadata group's replica in `dir` and starts it.
    pub async fn create_metadata(
        &self,
        group: GroupId,
        dir: &Path,
        log_config: LogConfig,
    ) -> Result<Arc<MetadataGroup>> {
        let g = self.open_group(group, dir, log_config).await?;
        let g = Arc::new(MetadataGroup::new(g));
        let previous = self
            .metadata
            .write()
            .expect("invariant: registry lock is never poisoned")
            .replace(g.clone());
        self.liveness.watch_group(group, g.raft().server_metrics());
        if let Some(p) = previous {
            p.shutdown().await?;
        }
        Ok(g)
    }

    /// The metadata group, if this node has a replica of it.
    pub fn metadata(&self) -> Option<Arc<MetadataGroup>> {
        self.metadata
            .read()
            .expect("invariant: registry lock is never poisoned")
            .clone()
    }

    pub(crate) fn route(&self, group: GroupId) -> Option<Route> {
        if let Some(m) = self.metadata() {
            if m.id() == group {
                return Some(Route::Metadata(m.raft().clone()));
            }
        }
        self.partition(group)
            .map(|p| Route::Partition(p.raft().clone()))
    }

    /// Stops every group (the metadata group last) and the liveness task.
    pub async fn shutdown(&self) -> Result<()> {
        self.shut_down.store(true, Ordering::Release);
        let parts: Vec<_> = self
            .partitions
            .write()
            .expect("invariant: registry lock is never poisoned")
            .drain()
            .map(|(_, g)| g)
            .collect();
        let mut first_err = None;
        for g in parts {
            if let Err(e) = g.shutdown().await {
                tracing::error!(node = self.node, group = g.id(), error = %e, "shut down raft group");
                first_err.get_or_insert(e);
            }
        }
        let meta = self
            .metadata
            .write()
            .expect("invariant: registry lock is never poisoned")
            .take();
        if let Some(m) = meta {
            if let Err(e) = m.shutdown().await {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

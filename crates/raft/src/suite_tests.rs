//! openraft's storage test suite against [`LogStore`] and [`StateMachine`].

use std::sync::{Arc, RwLock};

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use skein_storage::LogConfig;

use crate::log_store::LogStore;
use crate::partition::ProducerTable;
use crate::state_machine::{open_replica, StateMachine};
use crate::types::{NodeId, PartitionTypes};

struct Builder;

type Ls = LogStore<PartitionTypes>;
type Sm = StateMachine<PartitionTypes, ProducerTable>;

impl StoreBuilder<PartitionTypes, Ls, Sm, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, Ls, Sm), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (shared, state, snap) =
            open_replica::<PartitionTypes, ProducerTable>(1, 0, dir.path(), LogConfig::default())
                .await
                .expect("open log and load snapshot");
        let ls = LogStore::new_for_suite(shared.clone(), 1 << 20);
        let sm = StateMachine::new(shared, Arc::new(RwLock::new(state)), snap);
        Ok((dir, ls, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("openraft storage suite passes");
}

//! The whole realtime path started in-process for one test: its own topics
//! and PostgreSQL database with one key per scope (the hub tests' `Stack`:
//! `stack.keys`), its own ClickHouse database, the
//! gateway, the processor with its production batching, the hub and the
//! query-api. A test that declares this module also declares `common` (the
//! hub's test helpers) and `support`.
#![allow(dead_code)]

use realtime_hub::HubConfig;
use service_kit::testing::{InProcess, TestClickHouse};

use crate::{common::Stack, support};

pub struct Pipeline {
    pub stack: Stack,
    pub clickhouse: TestClickHouse,
    pub gateway: InProcess,
    pub processor: InProcess,
    pub hub: InProcess,
    pub api: InProcess,
}

impl Pipeline {
    /// Every service started and ready, the hub with `hub`.
    pub async fn start(hub: HubConfig) -> Self {
        let stack = Stack::new().await;
        let clickhouse = TestClickHouse::create().await.expect("test ClickHouse database");
        let gateway = support::start_gateway(&stack.kafka, &stack.postgres.config, 1).await;
        let processor = support::start_realtime_processor(&stack.kafka, &clickhouse.config).await;
        let hub = stack.start_hub(hub).await;
        let api = support::start_api(&stack.kafka, &clickhouse.config, &stack.postgres.config).await;
        Self { stack, clickhouse, gateway, processor, hub, api }
    }

    /// Stops the services (readers first) and removes the test's topics and databases.
    pub async fn stop(self) {
        for service in [self.api, self.hub, self.processor, self.gateway] {
            service.stop().await.expect("service stopped");
        }
        let dead_letters = self.stack.topics.dead_letters.clone();
        let _ = service_kit::deps::kafka::delete_topics(&self.stack.kafka, &[&dead_letters]).await;
        self.stack.cleanup().await;
        self.clickhouse.drop().await.expect("test ClickHouse database dropped");
    }
}

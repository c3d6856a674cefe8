//! The cheap drills through `cargo test` (CI): a `kill -9` of the
//! stream-processor and the poison batch, on the run's own services (the
//! binaries `cargo test --workspace` builds for the services' own tests),
//! against the local stack's servers, with short timings.

use super::*;

fn quick() -> Settings {
    Settings {
        load: LoadSettings { rate: 60.0, videos: 5, seed: 14 },
        lead: Duration::from_secs(5),
        down: Duration::from_secs(2),
        outage: Duration::from_secs(10),
        tail: Duration::from_secs(4),
        catch_up: Duration::from_secs(90),
        hot_for: Duration::from_secs(5),
        hot_factor: 10.0,
    }
}

#[test]
fn every_drill_the_issue_names_is_listed_once() {
    let names: Vec<&str> = drills::all().iter().map(|d| d.name).collect();
    for name in [
        "kill-ingest-gateway",
        "kill-stream-processor",
        "kill-aggregator-cron",
        "kill-query-api",
        "kill-realtime-hub",
        "stop-kafka",
        "stop-clickhouse",
        "stop-postgres",
        "stop-redis",
        "poison-batch",
        "hot-key",
    ] {
        assert_eq!(names.iter().filter(|n| **n == name).count(), 1, "{name} in {names:?}");
    }
}

#[test]
fn drills_are_selected_by_name() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        chaos: ChaosArgs,
    }
    let args = Cli::parse_from(["chaos"]).chaos;
    assert_eq!(args.selected().unwrap().len(), drills::all().len());
    assert_eq!((args.lead, args.outage, args.rate), (Duration::from_secs(10), Duration::from_secs(30), 100.0));
    let args = Cli::parse_from(["chaos", "--drill", "poison-batch,kill-query-api"]).chaos;
    let names: Vec<&str> = args.selected().unwrap().iter().map(|d| d.name).collect();
    assert_eq!(names, ["kill-query-api", "poison-batch"], "suite order");
    let args = Cli::parse_from(["chaos", "--no-servers"]).chaos;
    assert!(args.selected().unwrap().iter().all(|d| !d.stops_a_server()));
    let err = Cli::parse_from(["chaos", "--drill", "nope"]).chaos.selected().unwrap_err();
    assert!(err.to_string().contains("kill-stream-processor"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_processor_and_a_poison_batch_lose_and_double_count_nothing() {
    let layout = Layout::discover();
    for name in stack::SERVICES {
        let binary = layout.binary(name);
        assert!(
            binary.exists(),
            "{} is missing: `cargo test --workspace` or `cargo build --bins` builds it",
            binary.display()
        );
    }
    let selected: Vec<Drill> =
        drills::all().into_iter().filter(|d| matches!(d.name, "kill-stream-processor" | "poison-batch")).collect();
    let rows = run_drills(&layout, &selected, quick(), false, false).await.unwrap();
    eprintln!("{}\n{}", report::table(&rows), report::details(&rows));
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert!(row.passed(), "{row:#?}");
        assert!(row.accepted > 100 && row.videos >= 5, "{row:#?}");
        assert!(row.recovery.is_some(), "{row:#?}");
    }
    assert_eq!(rows[1].dead_lettered, 1, "{:#?}", rows[1]);
}

/// Issue 16's broker drill in CI: `kill -9` of one of cluster mode's three
/// brokers under load (`cargo xtask test` starts cluster mode's servers when
/// they do not run; by hand, `cargo xtask up --cluster --no-services`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_cluster_a_killed_broker_loses_and_double_counts_nothing() {
    let layout = Layout::discover();
    let selected: Vec<Drill> = drills::cluster_all().into_iter().filter(|d| d.name == "kill-kafka-broker").collect();
    let rows = run_drills(&layout, &selected, quick(), false, true).await.unwrap();
    eprintln!("{}\n{}", report::table(&rows), report::details(&rows));
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert!(row.passed(), "{row:#?}");
    assert!(row.accepted > 100 && row.videos >= 5, "{row:#?}");
    assert!(row.recovery.is_some(), "{row:#?}");
}

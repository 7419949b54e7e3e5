//! The PostgreSQL baseline the store bench and the load generator print beside their PostgreSQL
//! cases: single-row insert transactions (autocommit, each one commit, so one WAL flush each) per
//! second over one connection with a prepared statement, into a logged table of the same
//! database server; and the server's commit settings, which decide what a commit costs.

use std::time::{Duration, Instant};

/// `PostgreSQL <version>, fsync=<on|off>, synchronous_commit=<...>` of the server `client` is on.
pub async fn settings(client: &tokio_postgres::Client) -> String {
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), current_setting('fsync'), \
             current_setting('synchronous_commit')",
            &[],
        )
        .await
        .expect("the server's settings");
    format!(
        "PostgreSQL {}, fsync={}, synchronous_commit={}",
        row.get::<_, String>(0),
        row.get::<_, String>(1),
        row.get::<_, String>(2)
    )
}

/// Single-row insert transactions per second over `client` for `run_for`, into a table `table`
/// created for it and dropped afterwards.
pub async fn insert_rate(client: &tokio_postgres::Client, table: &str, run_for: Duration) -> f64 {
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {table}; \
             CREATE TABLE {table} (id bigint PRIMARY KEY, payload text NOT NULL)"
        ))
        .await
        .expect("the baseline table");
    let insert = client
        .prepare(&format!(
            "INSERT INTO {table} (id, payload) VALUES ($1, $2)"
        ))
        .await
        .expect("prepare the baseline insert");
    let payload = r#"{"order":"order-1","amount":25,"currency":"EUR"}"#;
    let start = Instant::now();
    let mut n: i64 = 0;
    while start.elapsed() < run_for {
        n += 1;
        client
            .execute(&insert, &[&n, &payload])
            .await
            .expect("a baseline insert");
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    client
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .expect("drop the baseline table");
    rate
}

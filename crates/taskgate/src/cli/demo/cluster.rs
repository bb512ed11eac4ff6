//! The demo's throwaway PostgreSQL (see `taskgate-pgcluster`), with the
//! story's database: `orders` and `customers`, owned by a role whose
//! password only the gateway knows.

use std::path::Path;

use taskgate_pgcluster::Cluster;

/// The demo's database role.
pub const ROLE: &str = "orders_rw";

/// Creates and starts a cluster with a database `orders` owned by [`ROLE`]
/// (password `password`), holding `orders` and `customers`.
pub fn start(dir: &Path, password: &str) -> anyhow::Result<Cluster> {
    let cluster = Cluster::start(
        dir,
        "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        &[],
    )?;
    cluster.psql(
        "postgres",
        &format!("CREATE ROLE {ROLE} LOGIN PASSWORD '{password}'"),
    )?;
    cluster.psql("postgres", &format!("CREATE DATABASE orders OWNER {ROLE}"))?;
    cluster.psql(
        "orders",
        &format!(
            "SET ROLE {ROLE};
             CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL);
             CREATE TABLE orders (id serial PRIMARY KEY, customer_id int REFERENCES customers,
                                  item text NOT NULL, qty int NOT NULL DEFAULT 1);
             INSERT INTO customers (name) VALUES ('ada'), ('grace');
             INSERT INTO orders (customer_id, item, qty) VALUES (1, 'apple', 3), (2, 'pear', 5), (1, 'fig', 1);"
        ),
    )?;
    Ok(cluster)
}

//! PostgreSQL's own functions, by name: a call of one is code the gateway
//! knows (its effects are listed in `names`); a call of any other function
//! runs code the gateway cannot see into.

use std::sync::OnceLock;

/// `builtins.txt`: the names in `pg_catalog` (sorted, one a line, after a
/// `#` header saying how it was made).
const LIST: &str = include_str!("builtins.txt");

fn names() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut v: Vec<&str> = LIST.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
        v.sort_unstable();
        v
    })
}

/// Is `name` (as written: `f`, `pg_catalog.f`, `s.f`) a function of
/// PostgreSQL's own catalog? A name in another schema never is, whatever
/// it is called.
pub(crate) fn is_catalog_function(name: &str) -> bool {
    let (schema, last) = match name.rsplit_once('.') {
        Some((schema, last)) => (Some(schema), last),
        None => (None, name),
    };
    match schema {
        Some("pg_catalog") => true,
        Some(_) => false,
        None => names().binary_search(&last).is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::is_catalog_function;

    #[test]
    fn catalog_functions_are_known_by_name() {
        for f in [
            "count",
            "now",
            "lower",
            "pg_sleep",
            "pg_catalog.anything",
            "jsonb_agg",
            "any_value",
        ] {
            assert!(is_catalog_function(f), "{f}");
        }
        for f in ["touch_customers", "public.lower", "shop.count", "my_func"] {
            assert!(!is_catalog_function(f), "{f}");
        }
    }
}

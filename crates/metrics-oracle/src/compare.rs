//! Field-by-field comparison of an expected JSON answer with a received one.

use serde_json::Value;

/// Relative tolerance for floating-point fields (sums may be taken in another order).
pub const RELATIVE_TOLERANCE: f64 = 1e-9;

/// Whether two floats agree within [`RELATIVE_TOLERANCE`] (absolute near zero).
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= RELATIVE_TOLERANCE * a.abs().max(b.abs()).max(1.0)
}

/// Every difference between `expected` and `got`, as `path: expected …, got …`.
///
/// Every key of an expected object must be in `got` (extra keys in `got` are
/// not compared). An expected integer must be received as exactly that
/// integer; an expected float may be received as any number within
/// [`RELATIVE_TOLERANCE`]. Arrays must have the same length.
pub fn differences(expected: &Value, got: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(expected, got, "$", &mut out);
    out
}

fn walk(expected: &Value, got: &Value, path: &str, out: &mut Vec<String>) {
    match (expected, got) {
        (Value::Object(e), Value::Object(g)) => {
            for (key, value) in e {
                let here = format!("{path}.{key}");
                match g.get(key) {
                    Some(received) => walk(value, received, &here, out),
                    None => out.push(format!("{here}: expected {value}, missing")),
                }
            }
        }
        (Value::Array(e), Value::Array(g)) => {
            if e.len() != g.len() {
                out.push(format!("{path}: expected {} elements, got {}", e.len(), g.len()));
            }
            for (i, (a, b)) in e.iter().zip(g).enumerate() {
                walk(a, b, &format!("{path}[{i}]"), out);
            }
        }
        (Value::Number(e), Value::Number(g)) => {
            let equal = if e.is_f64() {
                close(e.as_f64().expect("expected figures are numbers"), g.as_f64().unwrap_or(f64::NAN))
            } else {
                // An integer field: the same integer, not a float that happens to be near.
                !g.is_f64() && e.as_i128() == g.as_i128()
            };
            if !equal {
                out.push(format!("{path}: expected {e}, got {g}"));
            }
        }
        (e, g) if e == g => {}
        (e, g) => out.push(format!("{path}: expected {e}, got {g}")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn floats_within_tolerance_and_exact_integers() {
        let expected = json!({"a": 66.0, "b": 3, "c": {"d": null, "e": "x"}, "f": [1.5, 2]});
        assert!(
            differences(
                &expected,
                &json!({"a": 66.000_000_000_01, "b": 3, "c": {"d": null, "e": "x"},
            "f": [1.5, 2], "extra": true})
            )
            .is_empty()
        );
        assert!(differences(&json!({"a": 0.0}), &json!({"a": 0})).is_empty(), "a float field may come as 0");
        let got = json!({"a": 66.1, "b": 3.0, "c": {"d": 1}, "f": [1.5]});
        assert_eq!(
            differences(&expected, &got),
            vec![
                "$.a: expected 66.0, got 66.1",
                "$.b: expected 3, got 3.0",
                "$.c.d: expected null, got 1",
                "$.c.e: expected \"x\", missing",
                "$.f: expected 2 elements, got 1",
            ]
        );
    }

    #[test]
    fn closeness_is_relative_and_absolute_near_zero() {
        assert!(close(1e12, 1e12 + 1.0));
        assert!(!close(1e3, 1e3 + 1e-5));
        assert!(close(0.0, 1e-10));
        assert!(!close(0.0, 1e-8));
    }
}

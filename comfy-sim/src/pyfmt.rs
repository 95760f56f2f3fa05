//! Python's `str()` and `repr()` of JSON values, so error texts read exactly like ComfyUI's.
//!
//! ComfyUI builds messages such as `"Value 2.0 bigger than max of 1.0"` or
//! `"unet_name: 'x.gguf' not in ['a.gguf', 'b.gguf']"` with Python formatting; clients that show or
//! parse them must see the same text from the simulator.

use serde_json::Value;

/// Python's `repr(float)` (also its `str`): shortest round-trip digits, `.0` on whole numbers,
/// exponent form below 1e-4 and from 1e16 on.
pub(crate) fn float(v: f64) -> String {
    if v.is_nan() {
        return "nan".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "inf".to_owned()
        } else {
            "-inf".to_owned()
        };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0.0".to_owned()
        } else {
            "0.0".to_owned()
        };
    }
    let sci = format!("{v:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-4..16).contains(&exponent) {
        let plain = format!("{v}");
        if plain.contains('.') {
            plain
        } else {
            format!("{plain}.0")
        }
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    }
}

/// Python's `repr(str)`: single quotes unless the text holds a single quote and no double quote.
pub(crate) fn repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `str()` of a value that came from JSON (`None`, `True`, `1.0`, `['a', 1]`, `{'k': 'v'}`).
pub(crate) fn str_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => repr(other),
    }
}

/// Python's `repr()` of a value that came from JSON.
pub(crate) fn repr(value: &Value) -> String {
    match value {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (None, Some(u), _) => u.to_string(),
            (None, None, Some(f)) => float(f),
            _ => n.to_string(),
        },
        Value::String(s) => repr_str(s),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(repr).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", repr_str(k), repr(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn floats_print_like_python() {
        assert_eq!(float(1.0), "1.0");
        assert_eq!(float(2.5), "2.5");
        assert_eq!(float(0.1), "0.1");
        assert_eq!(float(100.0), "100.0");
        assert_eq!(float(1e16), "1e+16");
        assert_eq!(float(1.5e-5), "1.5e-05");
        assert_eq!(float(0.0001), "0.0001");
        assert_eq!(float(-3.0), "-3.0");
    }

    #[test]
    fn a_list_of_file_names_prints_like_the_recorded_error() {
        let list = json!(["broken-not-really.gguf", "zimage-random-dim3840-1L-F32.gguf"]);
        assert_eq!(
            repr(&list),
            "['broken-not-really.gguf', 'zimage-random-dim3840-1L-F32.gguf']"
        );
    }

    #[test]
    fn strings_with_quotes_pick_the_quote_python_picks() {
        assert_eq!(repr_str("it's"), "\"it's\"");
        assert_eq!(repr_str("say \"hi\" it's"), "'say \"hi\" it\\'s'");
        assert_eq!(repr_str("a\nb"), "'a\\nb'");
    }

    #[test]
    fn str_of_leaves_strings_bare_and_spells_python_constants() {
        assert_eq!(str_of(&json!("abc")), "abc");
        assert_eq!(str_of(&json!(null)), "None");
        assert_eq!(str_of(&json!(true)), "True");
        assert_eq!(str_of(&json!({"a": [1, 2.0]})), "{'a': [1, 2.0]}");
    }
}

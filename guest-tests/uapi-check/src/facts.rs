//! Result lines of the guest harness protocol
//! (`VFIOCXL-RESULT {"kind":"fact",...}`, docs/guest-harness.md), printed
//! on stdout, which the VM steps point at the results channel.

/// `s` as a JSON string literal.
pub fn json(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The fact line for `key` = `value` of step `step`.
pub fn line(step: &str, key: &str, value: &str) -> String {
    format!(
        "VFIOCXL-RESULT {{\"kind\":\"fact\",\"step\":{},\"key\":{},\"value\":{}}}",
        json(step),
        json(key),
        json(value)
    )
}

/// Prints one fact line.
pub fn fact(step: &str, key: &str, value: &str) {
    println!("{}", line(step, key, value));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_are_valid_json_strings() {
        assert_eq!(json("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
        assert_eq!(
            line("s", "k", "v"),
            r#"VFIOCXL-RESULT {"kind":"fact","step":"s","key":"k","value":"v"}"#
        );
    }
}

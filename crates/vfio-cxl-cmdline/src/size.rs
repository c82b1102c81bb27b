//! Byte sizes as users and QEMU write them: `4G`, `1280M`, `1073741824`.

/// One mebibyte.
pub const MIB: u64 = 1 << 20;
/// One gibibyte.
pub const GIB: u64 = 1 << 30;

/// Parses a size: digits, then optionally K, M, G or T (binary multiples,
/// as QEMU reads them), optionally followed by `iB` or `B`.
pub fn parse(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a size (e.g. 4G, 1280M or a number of bytes)");
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(bad()),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// The size with QEMU's largest exact suffix: `1G`, `1280M`, `4096` (bytes).
pub fn qemu(bytes: u64) -> String {
    match bytes {
        0 => "0".into(),
        b if b % GIB == 0 => format!("{}G", b / GIB),
        b if b % MIB == 0 => format!("{}M", b / MIB),
        b => b.to_string(),
    }
}

/// For people: `256 MiB`, `1 GiB`, `1.25 GiB`.
pub fn human(bytes: u64) -> String {
    if bytes >= GIB {
        let g = bytes as f64 / GIB as f64;
        if bytes % GIB == 0 {
            format!("{} GiB", bytes / GIB)
        } else {
            format!("{g:.2} GiB")
        }
    } else {
        format!("{} MiB", bytes / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_qemu() {
        for (text, want) in [
            ("4G", 4 * GIB),
            ("4g", 4 * GIB),
            ("4GiB", 4 * GIB),
            ("1280M", 1280 * MIB),
            ("512MB", 512 * MIB),
            ("1T", 1024 * GIB),
            ("64K", 64 << 10),
            ("1073741824", GIB),
        ] {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
        for bad in ["", "G", "4X", "-1G", "1.5G", "0x10", "4 G"] {
            assert!(parse(bad).unwrap_err().contains("is not a size"), "{bad}");
        }
        assert!(parse("99999999999T").unwrap_err().contains("too large"));
    }

    #[test]
    fn sizes_print_with_the_largest_exact_suffix() {
        assert_eq!(qemu(GIB), "1G");
        assert_eq!(qemu(5 * GIB), "5G");
        assert_eq!(qemu(1280 * MIB), "1280M");
        assert_eq!(qemu(4097), "4097");
        assert_eq!(human(256 * MIB), "256 MiB");
        assert_eq!(human(2 * GIB), "2 GiB");
        assert_eq!(human(1280 * MIB), "1.25 GiB");
        for b in [GIB, 1280 * MIB, 7 * GIB, 3 * MIB] {
            assert_eq!(parse(&qemu(b)), Ok(b), "round trip of {b}");
        }
    }
}

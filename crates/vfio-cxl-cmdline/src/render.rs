//! The options as text: shell words for a QEMU command line, or a libvirt
//! `<qemu:commandline>` element.

/// libvirt's QEMU namespace for `<qemu:commandline>`.
pub const QEMU_NS: &str = "http://libvirt.org/schemas/domain/qemu/1.0";

/// A shell word: as is when it holds only characters no POSIX shell
/// treats specially, else single-quoted.
pub fn shell_word(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || ",._+:@%/=-".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// One option per line, continued with ` \`: pastes into a command line,
/// and `eval "set -- $(vfio-cxl-cmdline BDF)"` turns it into arguments.
pub fn shell(options: &[(String, String)]) -> String {
    let lines: Vec<String> = options
        .iter()
        .map(|(o, v)| format!("{} {}", shell_word(o), shell_word(v)))
        .collect();
    format!("{}\n", lines.join(" \\\n"))
}

/// Escapes text for an XML attribute value (either quote style) or a
/// comment's surroundings.
pub fn xml_attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// A `<qemu:commandline>` element with the options as `<qemu:arg>`s,
/// preceded by comments (`notes`: one line each). It declares the
/// namespace itself, so the fragment is well-formed on its own; libvirt
/// moves the declaration to `<domain>` when it saves the domain.
pub fn libvirt(options: &[(String, String)], notes: &[String]) -> String {
    let mut out = String::new();
    for n in notes {
        // "--" may not appear inside an XML comment.
        out.push_str(&format!("<!-- {} -->\n", n.replace("--", "- -")));
    }
    out.push_str(&format!("<qemu:commandline xmlns:qemu='{QEMU_NS}'>\n"));
    for (o, v) in options {
        for arg in [o, v] {
            out.push_str(&format!("  <qemu:arg value='{}'/>\n", xml_attr(arg)));
        }
    }
    out.push_str("</qemu:commandline>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Vec<(String, String)> {
        vec![
            (
                "-M".into(),
                "cxl=on,cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=1G".into(),
            ),
            (
                "-device".into(),
                "vfio-cxl,host=0000:0d:00.0,bus=rp0,id=vcxl0".into(),
            ),
        ]
    }

    #[test]
    fn shell_output_is_one_option_per_continued_line() {
        assert_eq!(
            shell(&opts()),
            "-M cxl=on,cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=1G \\\n-device vfio-cxl,host=0000:0d:00.0,bus=rp0,id=vcxl0\n"
        );
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("a=b,c:d/e.f"), "a=b,c:d/e.f");
        assert_eq!(shell_word(""), "''");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's $x"), r"'it'\''s $x'");
    }

    /// The shell output, read back by a real shell, gives the same words.
    #[test]
    fn a_shell_reads_the_words_back() {
        let mut o = opts();
        o.push(("-name".into(), "it's a $VM; `x`".into()));
        let script = "eval \"set -- $(cat)\"; for a in \"$@\"; do printf '%s\\n' \"$a\"; done";
        let mut child = std::process::Command::new("sh")
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(shell(&o).as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let words: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        let want: Vec<String> = o.into_iter().flat_map(|(a, b)| [a, b]).collect();
        assert_eq!(words, want);
    }

    #[test]
    fn libvirt_output_is_a_qemu_commandline_element() {
        let x = libvirt(&opts(), &["0000:0d:00.0: 256 MiB -- window 1G".into()]);
        let want = [
            "<!-- 0000:0d:00.0: 256 MiB - - window 1G -->",
            "<qemu:commandline xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>",
            "  <qemu:arg value='-M'/>",
            "  <qemu:arg value='cxl=on,cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=1G'/>",
            "  <qemu:arg value='-device'/>",
            "  <qemu:arg value='vfio-cxl,host=0000:0d:00.0,bus=rp0,id=vcxl0'/>",
            "</qemu:commandline>",
        ];
        assert_eq!(x.lines().collect::<Vec<_>>(), want);
        assert!(x.ends_with('\n'));
        assert_eq!(
            xml_attr(r#"a<b>&'c'"d""#),
            "a&lt;b&gt;&amp;&apos;c&apos;&quot;d&quot;"
        );
    }
}

//! Rust symbol names turned into linker-script globs that match the same function in
//! another build. Both manglings occur in one binary: the standard library ships mangled with
//! v0 (RFC 2603), crates built by cargo are still mangled the legacy way unless asked.
//!
//! A legacy name (`_ZN5tokio7runtime4park5Inner4park17h0123456789abcdefE`) ends with a hash of
//! the crate's build and of the generic arguments: the glob keeps the path and drops the
//! hash, so it matches every instantiation of a generic function (more than ran, which only
//! moves some cold code in with the hot).
//!
//! A v0 name carries three things that change from one build to the next while the function
//! stays the same: each crate's disambiguator (a hash of the crate's version, target,
//! compiler and flags: `Cs9bVfHK3ilKk_5tokio`), back-references (`B1k_`, byte offsets into
//! the name, which move when a disambiguator's length does) and the `.llvm.<n>` suffix LTO
//! gives promoted local functions. The glob keeps everything else (paths, identifiers,
//! generic arguments, closure and impl indices) and puts `*` in their place.

/// The glob for `symbol`, or `None` when it is not a Rust name this module understands.
pub fn glob(symbol: &str) -> Option<String> {
    if symbol.starts_with("_ZN") {
        return legacy_glob(symbol);
    }
    let rest = symbol.strip_prefix("_R")?;
    let mut p = Parser {
        s: rest.as_bytes(),
        at: 0,
        out: String::from("_R"),
    };
    // Encoding version.
    p.copy_while(|c| c.is_ascii_digit());
    p.path()?;
    // The instantiating crate, for generic functions.
    if p.peek().is_some_and(|c| b"CMXYNIB".contains(&c)) {
        p.path()?;
    }
    // A vendor suffix (`.llvm.123`) or nothing: either way, `*`.
    match p.peek() {
        None | Some(b'.') | Some(b'$') => {}
        Some(_) => return None,
    }
    p.star();
    Some(p.out)
}

/// `_ZN <len><ident>... 17h <16 hex digits> E [.suffix]`: everything up to the hash, then `*`.
/// The identifiers are made of `[A-Za-z0-9_$.]` (`$LT$`, `..` for `<`, `::`).
fn legacy_glob(symbol: &str) -> Option<String> {
    // The last `17h`: a hash has no `h`, so none comes after it.
    let at = symbol.rfind("17h")?;
    let hash = symbol.get(at + 3..at + 19)?;
    if !hash.bytes().all(|c| c.is_ascii_hexdigit()) || symbol.get(at + 19..at + 20) != Some("E") {
        return None;
    }
    let path = symbol.get(..at + 3)?;
    path.bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"_$.".contains(&c))
        .then(|| format!("{path}*"))
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
    out: String,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.at += 1;
        Some(c)
    }

    /// Take one byte and write it out.
    fn copy(&mut self) -> Option<u8> {
        let c = self.next()?;
        self.out.push(char::from(c));
        Some(c)
    }

    fn copy_while(&mut self, f: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&f) {
            self.copy();
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.copy();
            true
        } else {
            false
        }
    }

    fn star(&mut self) {
        if !self.out.ends_with('*') {
            self.out.push('*');
        }
    }

    /// `{0-9a-zA-Z} _`, written out.
    fn base62(&mut self) -> Option<()> {
        self.copy_while(|c| c.is_ascii_alphanumeric());
        (self.copy()? == b'_').then_some(())
    }

    /// `{0-9a-zA-Z} _`, not written out.
    fn skip_base62(&mut self) -> Option<()> {
        while self.peek().is_some_and(|c| c.is_ascii_alphanumeric()) {
            self.at += 1;
        }
        (self.next()? == b'_').then_some(())
    }

    /// `B <base62>`, written as `*`.
    fn backref(&mut self) -> Option<()> {
        self.next()?;
        self.skip_base62()?;
        self.star();
        Some(())
    }

    /// `[u] <decimal> [_] <bytes>`
    fn undisambiguated_identifier(&mut self) -> Option<()> {
        self.eat(b'u');
        let start = self.at;
        // `0` or a number not starting with 0 (`00` is two empty names).
        if !self.eat(b'0') {
            self.copy_while(|c| c.is_ascii_digit());
        }
        let len: usize = std::str::from_utf8(self.s.get(start..self.at)?).ok()?.parse().ok()?;
        self.eat(b'_');
        for _ in 0..len {
            self.copy()?;
        }
        Some(())
    }

    /// `[s <base62>] <undisambiguated-identifier>`: the disambiguator of a nested item (an
    /// impl or closure index) is kept; it is the same in every build of the same source.
    fn identifier(&mut self) -> Option<()> {
        if self.eat(b's') {
            self.base62()?;
        }
        self.undisambiguated_identifier()
    }

    fn path(&mut self) -> Option<()> {
        match self.peek()? {
            b'C' => {
                self.copy();
                // The crate's disambiguator is a hash of how it was built.
                if self.peek() == Some(b's') {
                    self.at += 1;
                    self.skip_base62()?;
                    self.out.push_str("s*_");
                }
                self.undisambiguated_identifier()
            }
            b'N' => {
                self.copy();
                let ns = self.copy()?;
                if !ns.is_ascii_alphabetic() {
                    return None;
                }
                self.path()?;
                self.identifier()
            }
            b'M' => {
                self.copy();
                self.impl_path()?;
                self.ty()
            }
            b'X' => {
                self.copy();
                self.impl_path()?;
                self.ty()?;
                self.path()
            }
            b'Y' => {
                self.copy();
                self.ty()?;
                self.path()
            }
            b'I' => {
                self.copy();
                self.path()?;
                while !self.eat(b'E') {
                    self.generic_arg()?;
                }
                Some(())
            }
            b'B' => self.backref(),
            _ => None,
        }
    }

    fn impl_path(&mut self) -> Option<()> {
        if self.eat(b's') {
            self.base62()?;
        }
        self.path()
    }

    fn generic_arg(&mut self) -> Option<()> {
        match self.peek()? {
            b'L' => {
                self.copy();
                self.base62()
            }
            b'K' => {
                self.copy();
                self.constant()
            }
            _ => self.ty(),
        }
    }

    fn lifetime(&mut self) -> Option<()> {
        if self.eat(b'L') { self.base62() } else { Some(()) }
    }

    fn binder(&mut self) -> Option<()> {
        if self.eat(b'G') { self.base62() } else { Some(()) }
    }

    fn ty(&mut self) -> Option<()> {
        match self.peek()? {
            b'a' | b'b' | b'c' | b'd' | b'e' | b'f' | b'h' | b'i' | b'j' | b'l' | b'm' | b'n' | b'o' | b'p' | b's'
            | b't' | b'u' | b'v' | b'x' | b'y' | b'z' => {
                self.copy();
                Some(())
            }
            b'A' => {
                self.copy();
                self.ty()?;
                self.constant()
            }
            b'S' | b'P' | b'O' => {
                self.copy();
                self.ty()
            }
            b'R' | b'Q' => {
                self.copy();
                self.lifetime()?;
                self.ty()
            }
            b'F' => {
                self.copy();
                self.binder()?;
                self.eat(b'U');
                if self.eat(b'K') && !self.eat(b'C') {
                    self.undisambiguated_identifier()?;
                }
                while !self.eat(b'E') {
                    self.ty()?;
                }
                self.ty()
            }
            b'D' => {
                self.copy();
                self.binder()?;
                while !self.eat(b'E') {
                    self.path()?;
                    while self.eat(b'p') {
                        self.undisambiguated_identifier()?;
                        self.ty()?;
                    }
                }
                self.lifetime()
            }
            b'T' => {
                self.copy();
                while !self.eat(b'E') {
                    self.ty()?;
                }
                Some(())
            }
            b'B' => self.backref(),
            _ => self.path(),
        }
    }

    /// A const generic argument: `p` (placeholder), a back-reference, or a type and its
    /// value in hex (`j4_`: 4usize); the structured forms of newer compilers too.
    fn constant(&mut self) -> Option<()> {
        match self.peek()? {
            b'p' => {
                self.copy();
                Some(())
            }
            b'B' => self.backref(),
            b'R' | b'Q' => {
                self.copy();
                self.constant()
            }
            b'A' | b'T' => {
                self.copy();
                while !self.eat(b'E') {
                    self.constant()?;
                }
                Some(())
            }
            b'V' => {
                self.copy();
                self.path()?;
                match self.copy()? {
                    b'U' => Some(()),
                    b'T' => {
                        while !self.eat(b'E') {
                            self.constant()?;
                        }
                        Some(())
                    }
                    b'S' => {
                        while !self.eat(b'E') {
                            self.identifier()?;
                            self.constant()?;
                        }
                        Some(())
                    }
                    _ => None,
                }
            }
            c if c.is_ascii_lowercase() => {
                self.copy();
                self.eat(b'n');
                self.copy_while(|c| c.is_ascii_hexdigit());
                (self.copy()? == b'_').then_some(())
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glob;

    /// Two builds of the same function, for x86-64 and for aarch64 (names taken from release
    /// builds of tlm-cpu-monitor with rustc 1.95): the crate hashes, which are part of a v0
    /// name, and the legacy hash differ; the globs do not, and each matches both names.
    #[test]
    fn the_same_function_in_two_builds_gets_one_glob() {
        let pairs = [
            (
                "_RNCINvMNtNtCsgEmfK2I1SDS_4core3net6parserNtB5_6Parser11read_numbertE0B9_",
                "_RNCINvMNtNtCs6Hz1PecaLG4_4core3net6parserNtB5_6Parser11read_numbertE0B9_",
            ),
            (
                "_RINvMs0_NtNtNtCsjrHSEGnQ3l9_3std12backtrace_rs9symbolize5gimliNtB6_5Cache11with_globalNCNvB6_7resolves_0EBc_",
                "_RINvMs0_NtNtNtCshxTglP3SOjd_3std12backtrace_rs9symbolize5gimliNtB6_5Cache11with_globalNCNvB6_7resolves_0EBc_",
            ),
            (
                "_ZN10async_nats10ServerAddr12is_websocket17ha97c1aa1cddb7d31E",
                "_ZN10async_nats10ServerAddr12is_websocket17h1850f8f1d97ea847E",
            ),
        ];
        for (a, b) in pairs {
            let (ga, gb) = (glob(a).unwrap(), glob(b).unwrap());
            assert_eq!(ga, gb, "{a} / {b}");
            assert!(matches(&ga, a) && matches(&ga, b), "{ga}");
        }
        // Back-references point into the name, so they move when a crate hash is longer.
        let longer = "_RNCINvMNtNtCs6Hz1PecaLG4xyz_4core3net6parserNtB8_6Parser11read_numbertE0Bc_";
        assert_eq!(glob(longer).unwrap(), glob(pairs[0].0).unwrap());
    }

    #[test]
    fn what_is_kept_and_what_is_hidden() {
        // Crate hash and back-reference hidden; the impl index (s0_) and identifiers kept.
        assert_eq!(
            glob("_RNvMs0_NtNtCs1HbyNmkc0wq_5tokio7runtime4timeNtB5_6Driver13park_internal").unwrap(),
            "_RNvMs0_NtNtCs*_5tokio7runtime4timeNt*6Driver13park_internal*"
        );
        // A closure (NC, empty name with index s0_) of a generic function with a const
        // argument (Kj8_: 8usize) and a reference type; instantiated in another crate.
        assert_eq!(
            glob("_RNCINvCs1a_3foo3barKj8_RhEs0_0Cs2b_3baz").unwrap(),
            "_RNCINvCs*_3foo3barKj8_RhEs0_0Cs*_3baz*"
        );
        // Closures of closures: two empty names, `00`.
        assert_eq!(glob("_RNCNCNvCs1a_3foo3run00").unwrap(), "_RNCNCNvCs*_3foo3run00*");
        // An identifier starting with a digit or `_` has a `_` separator.
        assert_eq!(glob("_RNvCs1a_3foo4__bar").unwrap(), "_RNvCs*_3foo4__bar*");
        assert_eq!(glob("_RNvCs1a_3foo3_1bc").unwrap(), "_RNvCs*_3foo3_1bc*");
        // dyn Trait + fn pointer types.
        assert_eq!(
            glob("_RINvCs1a_3foo3barFUKCRhEuDNtCs2b_3baz5TraitEL_E").unwrap(),
            "_RINvCs*_3foo3barFUKCRhEuDNtCs*_3baz5TraitEL_E*"
        );
    }

    #[test]
    fn legacy_names_lose_their_hash() {
        assert_eq!(
            glob("_ZN5tokio7runtime4park5Inner4park17h0123456789abcdefE").unwrap(),
            "_ZN5tokio7runtime4park5Inner4park17h*"
        );
        let name = "_ZN10async_nats6client6Client7publish28_$u7b$$u7b$closure$u7d$$u7d$17h4701df8982e29a4eE.llvm.42";
        let g = glob(name).unwrap();
        assert_eq!(
            g,
            "_ZN10async_nats6client6Client7publish28_$u7b$$u7b$closure$u7d$$u7d$17h*"
        );
        assert!(matches(&g, name));
    }

    #[test]
    fn other_names_are_refused() {
        for s in [
            "main",
            "_ZN4core3fmt5write17h0123E",
            "_ZN4core3fmt5writeE",
            "_R",
            "_RNvCs1a_3foo9tooshort",
            "_RZ",
        ] {
            assert_eq!(glob(s), None, "{s}");
        }
    }

    /// Every Rust name in this test binary (thousands, from std, clap, anyhow, toml and this
    /// crate, mangled by the compiler running the test) parses, and its glob matches it.
    #[test]
    fn the_names_of_this_binary_parse() {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new("nm").arg(&exe).output().unwrap();
        assert!(out.status.success());
        let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().nth(2))
            .filter(|n| n.starts_with("_R") || n.starts_with("_ZN"))
            .map(str::to_string)
            .collect();
        assert!(names.len() > 1000, "{} v0 names in {}", names.len(), exe.display());
        let failed: Vec<(&String, Option<String>)> = names
            .iter()
            .map(|n| (n, glob(n)))
            .filter(|(n, g)| g.as_ref().is_none_or(|g| !matches(g, n)))
            .collect();
        assert!(
            failed.is_empty(),
            "{} of {} names: {:?}",
            failed.len(),
            names.len(),
            &failed[..failed.len().min(5)]
        );
    }

    /// `*` matches any run of characters (the linker's glob, for the names above).
    fn matches(glob: &str, name: &str) -> bool {
        let parts: Vec<&str> = glob.split('*').collect();
        let (first, rest) = parts.split_first().unwrap();
        let Some(mut tail) = name.strip_prefix(first) else {
            return false;
        };
        for (i, part) in rest.iter().enumerate() {
            if i + 1 == rest.len() && !part.is_empty() {
                return tail.ends_with(part);
            }
            match tail.find(part) {
                Some(at) => tail = &tail[at + part.len()..],
                None => return false,
            }
        }
        true
    }
}

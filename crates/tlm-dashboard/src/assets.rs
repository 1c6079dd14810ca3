//! The page, embedded in the binary: `web/index.html`, its script and style, and the vendored
//! uPlot (`web/vendor/uplot/`, see its README for the version). Nothing is read from disk or
//! fetched from elsewhere at run time.

/// One file of the page: the path it is served at, its content type, its bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: HTML,
        body: include_bytes!("../web/index.html"),
    },
    Asset {
        path: "/assets/app.js",
        content_type: JS,
        body: include_bytes!("../web/app.js"),
    },
    Asset {
        path: "/assets/app.css",
        content_type: CSS,
        body: include_bytes!("../web/app.css"),
    },
    Asset {
        path: "/assets/uPlot.iife.min.js",
        content_type: JS,
        body: include_bytes!("../web/vendor/uplot/uPlot.iife.min.js"),
    },
    Asset {
        path: "/assets/uPlot.min.css",
        content_type: CSS,
        body: include_bytes!("../web/vendor/uplot/uPlot.min.css"),
    },
];

/// The content type and bytes of the page's file at `path` ("/" is the page itself), or `None`
/// for any other path.
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    ASSETS.iter().find(|a| a.path == path).map(|a| (a.content_type, a.body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `src="…"` and `href="…"` value of the page.
    fn references(html: &str) -> Vec<&str> {
        let mut refs = Vec::new();
        for attr in ["src=\"", "href=\""] {
            let mut rest = html;
            while let Some(at) = rest.find(attr) {
                rest = &rest[at + attr.len()..];
                let Some(end) = rest.find('"') else { break };
                refs.push(&rest[..end]);
                rest = &rest[end..];
            }
        }
        refs
    }

    #[test]
    fn every_file_the_page_references_is_served() {
        let (content_type, body) = asset("/").expect("the page is served at /");
        assert_eq!(content_type, HTML);
        let html = std::str::from_utf8(body).expect("index.html is UTF-8");
        let refs = references(html);
        // The two stylesheets, the two scripts and the inline icon at least.
        assert!(refs.len() >= 5, "found only {refs:?} in index.html");
        for r in refs {
            if r.starts_with("data:") {
                continue;
            }
            assert!(
                r.starts_with("/assets/"),
                "index.html refers to {r:?}: the page may load only its own /assets/ (no network at run time)"
            );
            let (content_type, body) =
                asset(r).unwrap_or_else(|| panic!("index.html refers to {r}, which asset() does not serve"));
            assert!(!body.is_empty(), "{r} is empty");
            let want = if r.ends_with(".js") { JS } else { CSS };
            assert_eq!(content_type, want, "content type of {r}");
        }
    }

    #[test]
    fn other_paths_are_not_assets() {
        for path in [
            "",
            "/index.html",
            "/assets/",
            "/assets/../Cargo.toml",
            "/api/state",
            "/assets/LICENSE",
        ] {
            assert!(asset(path).is_none(), "{path:?} should not be served as an asset");
        }
    }

    #[test]
    fn the_page_stays_small() {
        let total: usize = ASSETS.iter().map(|a| a.body.len()).sum();
        assert!(
            total < 200 * 1024,
            "the page weighs {total} bytes; keep it under 200 KiB"
        );
    }
}

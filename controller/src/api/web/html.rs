//! Text into HTML: escaping what users wrote, and the document around a
//! page (the stylesheet, and the script when the page is live).

/// HTML-escapes text from users (names, messages, log lines).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole HTML document; `live`: with the refreshing script.
pub fn document(title: &str, body: &str, live: bool) -> String {
    let script = if live {
        "<script src=\"/app.js\" defer></script>"
    } else {
        ""
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><link rel=\"icon\" href=\"data:,\">\
         <link rel=\"stylesheet\" href=\"/app.css\">{script}</head><body>{body}</body></html>"
    )
}

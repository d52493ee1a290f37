//! The page's files, compiled into the binary.

/// The page: one HTML document whose script draws every view.
pub const INDEX_HTML: &str = include_str!("../assets/index.html");
/// The script that fetches the JSON routes and draws the views.
pub const APP_JS: &str = include_str!("../assets/app.js");
/// The style sheet.
pub const STYLE_CSS: &str = include_str!("../assets/style.css");

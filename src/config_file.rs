//! Shared by the TOML files users write (search spaces, constraint files): where in the text a
//! parse error lies, as `line N`, for messages that name the file and the place.

/// `line N` of the error's span (counting the newlines before it), or `(file)` without one.
pub fn toml_location(text: &str, error: &toml::de::Error) -> String {
    error.span().map_or("(file)".into(), |span| {
        let line = text[..span.start].matches('\n').count() + 1;
        format!("line {line}")
    })
}

//! docs/schema.md documents every column of every table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tarn_lakehouse::schema::TableKind;

fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("docs/schema.md has no {heading}"));
    let rest = &doc[start + heading.len()..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn every_column_is_documented() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/schema.md")).unwrap();
    let shared = section(&doc, "## Columns shared by");
    let mut missing = Vec::new();
    for kind in TableKind::ALL {
        let own = section(&doc, &format!("## `{}`", kind.name()));
        for field in kind.schema().fields() {
            let quoted = format!("`{}`", field.name());
            if !own.contains(&quoted) && !shared.contains(&quoted) {
                missing.push(format!("{}.{}", kind.name(), field.name()));
            }
        }
    }
    assert!(missing.is_empty(), "undocumented columns: {missing:?}");
}

//! Output formats of the direct commands.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum OutputFormat {
    #[default]
    Table,
    Json,
    Yaml,
}

/// Renders `value` as JSON or YAML; `None` for table output, which each
/// command lays out itself.
pub fn structured<T: Serialize>(format: OutputFormat, value: &T) -> Option<String> {
    match format {
        OutputFormat::Table => None,
        OutputFormat::Json => {
            Some(serde_json::to_string_pretty(value).expect("output serialises") + "\n")
        }
        OutputFormat::Yaml => Some(serde_saphyr::to_string(value).expect("output serialises")),
    }
}

/// Left-aligned columns separated by three spaces, like kubectl.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}   "));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let out = table(
            &["ID", "DAYS"],
            &[
                vec!["a".into(), "10".into()],
                vec!["long-id".into(), "0".into()],
            ],
        );
        assert_eq!(out, "ID        DAYS\na         10\nlong-id   0\n");
    }
}

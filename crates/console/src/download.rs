//! What Fooocus's console says of a model it downloads: the file and how far along, read from
//! the lines the parser marks as a download (`Activity { what: "download" }`). Gradio's own
//! port message is read here too: both are Fooocus's console, told in the guard's words.

use serde::{Deserialize, Serialize};

/// A model download Fooocus is doing, as its console shows it (docs/ipc.md `Status.download`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ModelDownload {
    /// The file's name (never a folder of the user's).
    pub file: Option<String>,
    pub percent: Option<u8>,
    /// As the bar shows it: `2.91G/6.46G`.
    pub size: Option<String>,
}

impl ModelDownload {
    /// From one console line: the `Downloading: "URL" to PATH` line or a byte-unit tqdm bar.
    pub fn from_line(text: &str) -> Option<ModelDownload> {
        let t = text.trim();
        if let Some(rest) = t.strip_prefix("Downloading: \"") {
            let url = rest.split('"').next().unwrap_or("");
            let path = rest
                .split_once(" to ")
                .map(|(_, p)| p.trim())
                .unwrap_or(url);
            let file = path.rsplit(['/', '\\']).next().filter(|f| !f.is_empty());
            return Some(ModelDownload {
                file: file.map(str::to_string),
                ..ModelDownload::default()
            });
        }
        let (head, rest) = t.split_once('%')?;
        let percent: u8 = head.rsplit(' ').next()?.trim().parse().ok()?;
        let size = rest
            .split('|')
            .nth(2)
            .and_then(|s| s.split(" [").next())
            .map(str::trim)
            .filter(|s| s.contains('/'))
            .map(str::to_string);
        Some(ModelDownload {
            file: None,
            percent: Some(percent.min(100)),
            size,
        })
    }
}

/// The port Gradio could not listen on, from its `OSError` message (`Cannot find empty port in
/// range: 7865-7865. ...`; its networking.py, 3.39 and 3.41).
pub fn taken_port(message: &str) -> Option<u16> {
    let rest = message.split("Cannot find empty port in range:").nth(1)?;
    let first = rest.trim_start().split('-').next()?;
    first.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_taken_port_is_read_from_gradios_message() {
        let m = "Cannot find empty port in range: 7865-7865. You can specify a different port by setting the GRADIO_SERVER_PORT environment variable or passing the `server_port` parameter to `launch()`.";
        assert_eq!(taken_port(m), Some(7865));
        assert_eq!(taken_port("CUDA out of memory"), None);
    }
}

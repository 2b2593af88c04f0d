//! A library as a table: where it came from and, per item, its state, tokens, held-out
//! normalised MSE before and after BLD, and training time (what `library status`, `library
//! build` and `library merge` print). Reads the manifest only.

use super::Library;
use super::variant::Origin;

impl std::fmt::Display for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = &self.manifest;
        writeln!(
            f,
            "parent {} ({}), space {}, mode {:?}",
            m.parent.source.display(),
            m.parent.fingerprint,
            m.space.name,
            m.settings.mode,
        )?;
        writeln!(
            f,
            "{:<24} {:<12} {:>10} {:>12} {:>12} {:>8} {:>7}",
            "item", "state", "tokens", "nMSE init", "nMSE BLD", "ratio", "s"
        )?;
        let figure = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.5}"));
        for (key, r) in &m.items {
            let state = match r.origin {
                Origin::Trained => format!("{:?}", r.state).to_lowercase(),
                other => format!("{other:?}").to_lowercase(),
            };
            let ratio = match (r.nmse_init, r.nmse_trained) {
                (Some(a), Some(b)) if a > 0.0 => format!("{:.3}", b / a),
                _ => "-".into(),
            };
            writeln!(
                f,
                "{:<24} {:<12} {:>10} {:>12} {:>12} {:>8} {:>7.1}",
                key,
                state,
                r.tokens_seen,
                figure(r.nmse_init),
                figure(r.nmse_trained),
                ratio,
                r.seconds
            )?;
        }
        Ok(())
    }
}

//! Summary statistics of measurements (timings, per-round figures): one median for the whole
//! crate. Knows nothing of what was measured.

/// The median of `values` (the mean of the middle two for an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]),
    }
}

/// A distribution-free ~95% interval for the median of `values` (order statistics around the
/// middle, n/2 ± 0.98·√n ranks): where the median of another set of rounds would likely fall.
/// (NaN, NaN) when empty.
pub fn median_interval(values: &[f64]) -> (f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let half_width = 0.98 * (n as f64).sqrt();
    let middle = n as f64 / 2.0;
    let low = (middle - half_width).floor().max(0.0) as usize;
    let high = ((middle + half_width).ceil() as usize).min(n) - 1;
    (sorted[low], sorted[high])
}

#[cfg(test)]
mod tests {
    use super::{median, median_interval};

    #[test]
    fn median_of_odd_even_and_empty_lists() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn median_interval_is_the_order_statistics_around_the_median() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        let (low, high) = median_interval(&values);
        // n = 100: ranks 50 ± 9.8, i.e. the 41st to the 60th value (0-based 40 and 59).
        assert_eq!((low, high), (41.0, 60.0));
        let (low, high) = median_interval(&values[..9]);
        assert!(low <= median(&values[..9]) && median(&values[..9]) <= high);
        assert_eq!((low, high), (2.0, 8.0));
        assert_eq!(median_interval(&[5.0]), (5.0, 5.0));
        assert!(median_interval(&[]).0.is_nan());
    }
}

//! Reducing a range of points to what a chart of `columns` pixel columns can show.
//!
//! [`min_max`] splits `[from, to]` into `columns` columns of equal width and keeps, in each, the
//! point with the smallest and the one with the largest value, in their time order: a line
//! drawn through them covers every pixel the full series would, so a one-sample spike is never
//! lost. The first and last point of the range are kept too, so the line reaches both ends.
//! [`rate_per_second`] turns a counter into a rate before reduction, and [`changes`] reduces a
//! state (text) series to its changes.

/// The points of a range (times ascending) reduced to at most `2 * columns + 2`: per pixel
/// column the minimum and the maximum in their time order (a column of one or two points keeps
/// them as they are), plus the first and the last point of the range.
///
/// Column `c` holds the times in `[from + c·w, from + (c+1)·w)` with `w = (to - from) /
/// columns`; the last column also holds `to`, and points outside `[from, to]` count in the
/// nearest end column. Of equal values, the minimum is the earliest and the maximum the latest,
/// so a flat column keeps its first and last point. With fewer than `2 * columns` points,
/// everything is returned. `columns = 0` counts as 1. If `t` and `v` differ in length, the
/// extra elements of the longer one are ignored.
pub fn min_max(t: &[f64], v: &[f64], from: f64, to: f64, columns: usize) -> (Vec<f64>, Vec<f64>) {
    let n = t.len().min(v.len());
    let (t, v) = (&t[..n], &v[..n]);
    let columns = columns.max(1);
    if n < columns.saturating_mul(2) {
        return (t.to_vec(), v.to_vec());
    }
    let width = (to - from) / columns as f64;
    let column = |x: f64| -> usize {
        if !(width > 0.0 && width.is_finite()) {
            return 0;
        }
        let c = ((x - from) / width).floor();
        if c.is_nan() || c <= 0.0 {
            0
        } else {
            // `as` saturates on the way to usize; `min` keeps `to` in the last column.
            (c as usize).min(columns - 1)
        }
    };
    let mut keep: Vec<usize> = Vec::with_capacity(2 * columns + 2);
    let mut start = 0;
    while start < n {
        let c = column(t[start]);
        let mut end = start + 1;
        while end < n && column(t[end]) == c {
            end += 1;
        }
        if end - start <= 2 {
            keep.extend(start..end);
        } else {
            let (mut lo, mut hi) = (start, start);
            for i in start + 1..end {
                if v[i] < v[lo] {
                    lo = i;
                }
                if v[i] >= v[hi] {
                    hi = i;
                }
            }
            match lo.cmp(&hi) {
                std::cmp::Ordering::Less => keep.extend([lo, hi]),
                std::cmp::Ordering::Greater => keep.extend([hi, lo]),
                std::cmp::Ordering::Equal => keep.push(lo),
            }
        }
        start = end;
    }
    if keep.first() != Some(&0) {
        keep.insert(0, 0);
    }
    if keep.last() != Some(&(n - 1)) {
        keep.push(n - 1);
    }
    (
        keep.iter().map(|&i| t[i]).collect(),
        keep.iter().map(|&i| v[i]).collect(),
    )
}

/// The rate of change between consecutive points, `(v[i] - v[i-1]) / (t[i] - t[i-1])`, at
/// `t[i]`: one point fewer than the input. A counter that went backwards (a restart or a wrap)
/// gives no point there, and neither do two points at the same time.
pub fn rate_per_second(t: &[f64], v: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let n = t.len().min(v.len());
    let mut rt = Vec::with_capacity(n.saturating_sub(1));
    let mut rv = Vec::with_capacity(n.saturating_sub(1));
    for i in 1..n {
        let (dt, dv) = (t[i] - t[i - 1], v[i] - v[i - 1]);
        if dt > 0.0 && dv >= 0.0 {
            rt.push(t[i]);
            rv.push(dv / dt);
        }
    }
    (rt, rv)
}

/// The indices of a state timeline worth showing: the first point, then every point whose
/// value differs from the one before it.
pub fn changes<T: PartialEq>(v: &[T]) -> Vec<usize> {
    (0..v.len()).filter(|&i| i == 0 || v[i] != v[i - 1]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10 columns of 10 points over [0, 100): column c holds t = 10c .. 10c+9, values rising
    /// from 100c to 100c+9 except one dip and one peak inside.
    #[test]
    fn ten_columns_of_ten_points_give_twenty() {
        let t: Vec<f64> = (0..100).map(f64::from).collect();
        // Sawtooth: in each column the first point is the minimum, the last the maximum.
        let v: Vec<f64> = (0..100).map(|i| f64::from(i % 10)).collect();
        let (rt, rv) = min_max(&t, &v, 0.0, 100.0, 10);
        let mut et = Vec::new();
        let mut ev = Vec::new();
        for c in 0..10 {
            et.extend([f64::from(10 * c), f64::from(10 * c + 9)]);
            ev.extend([0.0, 9.0]);
        }
        assert_eq!(rt, et);
        assert_eq!(rv, ev);
    }

    #[test]
    fn the_extremes_are_kept_in_time_order() {
        // One column of 5 points: max at t=1, min at t=3; first (t=0) and last (t=4) added.
        let t = [0.0, 1.0, 2.0, 3.0, 4.0];
        let v = [5.0, 9.0, 5.0, 1.0, 5.0];
        // 5 points are not fewer than 2 * 2 columns: reduced. Column width 2.5: [0, 2.5) holds
        // t=0,1,2 (max 9 at t=1, min 5 at t=0 and t=2: the earliest, t=0); [2.5, 5] holds
        // t=3,4: two points, both kept.
        let (rt, rv) = min_max(&t, &v, 0.0, 5.0, 2);
        assert_eq!(rt, [0.0, 1.0, 3.0, 4.0]);
        assert_eq!(rv, [5.0, 9.0, 1.0, 5.0]);
    }

    #[test]
    fn a_spike_in_a_flat_series_survives() {
        // 1,000 points of 20.0 over [0, 1000), one of 95.0 at t=437, reduced to 10 columns.
        let t: Vec<f64> = (0..1000).map(f64::from).collect();
        let mut v = vec![20.0; 1000];
        v[437] = 95.0;
        let (rt, rv) = min_max(&t, &v, 0.0, 1000.0, 10);
        // Flat columns keep their first and last point: t = 100c and 100c+99. Column 4
        // ([400, 500)) keeps the minimum (first of the equal 20s: t=400) and the spike.
        let mut et = Vec::new();
        for c in 0..10 {
            if c == 4 {
                et.extend([400.0, 437.0]);
            } else {
                et.extend([f64::from(100 * c), f64::from(100 * c + 99)]);
            }
        }
        assert_eq!(rt, et);
        assert_eq!(rv.iter().filter(|&&x| x == 95.0).count(), 1);
        assert_eq!(rv.iter().filter(|&&x| x == 20.0).count(), 19);
    }

    #[test]
    fn first_and_last_point_of_the_range_are_kept() {
        // One column, 6 points: min at t=2, max at t=3; the first (t=0) and last (t=5) are
        // neither, and are added.
        let t = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
        let v = [3.0, 3.0, 0.0, 7.0, 3.0, 3.0];
        let (rt, rv) = min_max(&t, &v, 0.0, 5.0, 1);
        assert_eq!(rt, [0.0, 2.0, 3.0, 5.0]);
        assert_eq!(rv, [3.0, 0.0, 7.0, 3.0]);
    }

    #[test]
    fn few_points_are_returned_as_they_are() {
        // 19 points, 10 columns: 19 < 2 * 10, so nothing is dropped even though all fall in
        // one column.
        let t: Vec<f64> = (0..19).map(|i| f64::from(i) * 0.01).collect();
        let v: Vec<f64> = (0..19).map(|i| f64::from(i * i)).collect();
        assert_eq!(min_max(&t, &v, 0.0, 100.0, 10), (t.clone(), v.clone()));
        assert_eq!(min_max(&[], &[], 0.0, 1.0, 10), (vec![], vec![]));
    }

    #[test]
    fn columns_zero_counts_as_one_and_odd_ranges_do_not_panic() {
        let t = [0.0, 1.0, 2.0, 3.0];
        let v = [1.0, 4.0, 2.0, 3.0];
        // One column: min t=0, max t=1, last t=3 added.
        let expected = (vec![0.0, 1.0, 3.0], vec![1.0, 4.0, 3.0]);
        assert_eq!(min_max(&t, &v, 0.0, 3.0, 0), expected);
        // from == to, from > to, NaN bounds: everything lands in one column.
        assert_eq!(min_max(&t, &v, 3.0, 3.0, 1), expected);
        assert_eq!(min_max(&t, &v, 3.0, 0.0, 1), expected);
        assert_eq!(min_max(&t, &v, f64::NAN, f64::NAN, 2), expected);
        // Huge column counts do not overflow or allocate per column.
        assert_eq!(min_max(&t, &v, 0.0, 3.0, usize::MAX).0.len(), 4);
        // Mismatched lengths: the extra time is ignored.
        assert_eq!(min_max(&[0.0, 1.0, 2.0], &[5.0, 6.0], 0.0, 2.0, 1).0, [0.0, 1.0]);
    }

    #[test]
    fn rate_skips_counter_resets() {
        // Counter 100, 110 (+10 in 2 s), 130 (+20 in 4 s), 5 (reset), 25 (+20 in 10 s).
        let t = [0.0, 2.0, 6.0, 7.0, 17.0];
        let v = [100.0, 110.0, 130.0, 5.0, 25.0];
        let (rt, rv) = rate_per_second(&t, &v);
        assert_eq!(rt, [2.0, 6.0, 17.0]);
        assert_eq!(rv, [5.0, 5.0, 2.0]);
        assert_eq!(rate_per_second(&[1.0], &[1.0]), (vec![], vec![]));
        // A flat counter is a rate of 0, not a reset.
        assert_eq!(rate_per_second(&[0.0, 4.0], &[7.0, 7.0]), (vec![4.0], vec![0.0]));
    }

    #[test]
    fn changes_keep_the_first_point_and_every_change() {
        let v = ["idle", "idle", "run", "run", "run", "idle", "fault", "fault"];
        assert_eq!(changes(&v), [0, 2, 5, 6]);
        assert_eq!(changes::<&str>(&[]), Vec::<usize>::new());
    }

    /// xorshift64*: a reproducible pseudo-random source for the property test.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        /// Uniform in [0, 1).
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    #[test]
    fn every_columns_true_min_and_max_appear() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..200 {
            let columns = 1 + (rng.next() % 50) as usize;
            let n = (rng.next() % 3000) as usize;
            let from = rng.unit() * 1e9;
            let span = 1.0 + rng.unit() * 86_400.0;
            let to = from + span;
            // Ascending times inside [from, to], some repeated values (small integers) so
            // that ties occur.
            let mut t: Vec<f64> = (0..n).map(|_| from + rng.unit() * span).collect();
            t.sort_by(f64::total_cmp);
            let v: Vec<f64> = (0..n)
                .map(|_| {
                    if rng.next().is_multiple_of(4) {
                        (rng.next() % 5) as f64
                    } else {
                        rng.unit() * 1000.0 - 500.0
                    }
                })
                .collect();
            let (rt, rv) = min_max(&t, &v, from, to, columns);
            assert!(rt.len() <= (2 * columns + 2).max(n), "round {round}: too many points");
            assert!(rt.windows(2).all(|w| w[0] <= w[1]), "round {round}: not in time order");
            if n > 0 {
                assert_eq!(rt[0], t[0], "round {round}: first point lost");
                assert_eq!(rt[rt.len() - 1], t[n - 1], "round {round}: last point lost");
            }
            // Every output point is an input point.
            for (x, y) in rt.iter().zip(&rv) {
                assert!(t.iter().zip(&v).any(|(a, b)| a == x && b == y), "round {round}");
            }
            // The test's own column split: width (to - from) / columns, column of a time is
            // how many whole widths it lies after `from`, the last column closed at `to`.
            let width = span / columns as f64;
            let col = |x: f64| (((x - from) / width) as usize).min(columns - 1);
            for c in 0..columns {
                let inside: Vec<f64> = (0..n).filter(|&i| col(t[i]) == c).map(|i| v[i]).collect();
                if inside.is_empty() {
                    continue;
                }
                let lo = inside.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = inside.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let out: Vec<f64> = (0..rt.len()).filter(|&i| col(rt[i]) == c).map(|i| rv[i]).collect();
                assert!(out.contains(&lo), "round {round}, column {c}: min {lo} lost");
                assert!(out.contains(&hi), "round {round}, column {c}: max {hi} lost");
            }
        }
    }
}

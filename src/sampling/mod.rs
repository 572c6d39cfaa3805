//! The sampler chain: penalties, logit bias, top-k, typical-p, top-p, min-p,
//! temperature, then a seeded draw (or greedy argmax).
//!
//! Every buffer is allocated when the chain is bound to a vocabulary
//! ([`SamplerChain::bind`]); sampling a token allocates nothing. The random
//! generator is a seeded xoshiro256** so the same seed gives the same draws on every
//! machine and for every thread count (sampling is single-threaded).
//!
//! ```
//! use tramontane::sampling::SamplerChain;
//! let mut s = SamplerChain::greedy();
//! s.bind(4);
//! let pick = s.sample(&[0.1, 2.0, -1.0, 0.5]).unwrap();
//! assert_eq!(pick.id, 1);
//! ```

use alloc::vec::Vec;

use crate::kernels::Kernels;

/// What can go wrong while sampling.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SamplingError {
    /// The logits slice does not have the vocabulary's length.
    #[error("logits have {found} entries, the sampler was bound to a vocabulary of {expected}")]
    VocabMismatch {
        /// The bound vocabulary size.
        expected: usize,
        /// The logits length.
        found: usize,
    },
    /// Every candidate was removed or every logit is NaN / -inf.
    #[error("no token can be sampled: every logit is NaN or -inf after the chain")]
    NoCandidates,
    /// An option is out of its range.
    #[error("sampler option {name} = {value} is out of range ({range})")]
    BadOption {
        /// The option.
        name: &'static str,
        /// Its value.
        value: f32,
        /// The accepted range.
        range: &'static str,
    },
}

/// One sampled token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampled {
    /// The token id.
    pub id: u32,
    /// Natural log of its probability under the model's raw distribution (softmax of
    /// the logits before any sampler stage).
    pub logprob: f32,
}

#[derive(Clone, Copy, Debug)]
struct Cand {
    id: u32,
    logit: f32,
    p: f32,
}

/// A seeded xoshiro256** generator (no_std, no allocation).
#[derive(Clone, Debug)]
struct Rng([u64; 4]);

impl Rng {
    fn new(seed: u64) -> Rng {
        // SplitMix64 expands the seed into the state, as the xoshiro authors advise.
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The sampler chain's settings and state. Build it with the methods below, then
/// [`SamplerChain::bind`] it to the vocabulary size (the session does this).
#[derive(Clone, Debug)]
pub struct SamplerChain {
    temperature: f32,
    top_k: usize,
    top_p: f32,
    min_p: f32,
    typical_p: f32,
    repeat_penalty: f32,
    frequency_penalty: f32,
    presence_penalty: f32,
    penalty_last_n: usize,
    seed: u64,
    logit_bias: Vec<(u32, f32)>,
    // state
    rng: Rng,
    n_vocab: usize,
    cands: Vec<Cand>,
    history: Vec<u32>,
    history_pos: usize,
    history_len: usize,
}

impl Default for SamplerChain {
    /// llama.cpp's defaults: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, no
    /// penalties, seed 0.
    fn default() -> Self {
        SamplerChain {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            typical_p: 1.0,
            repeat_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_last_n: 64,
            seed: 0,
            logit_bias: Vec::new(),
            rng: Rng::new(0),
            n_vocab: 0,
            cands: Vec::new(),
            history: Vec::new(),
            history_pos: 0,
            history_len: 0,
        }
    }
}

impl SamplerChain {
    /// Always the most likely token (ties: the lowest id).
    pub fn greedy() -> Self {
        SamplerChain {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..Default::default()
        }
    }

    /// Temperature; 0 (or less) means greedy.
    pub fn temperature(mut self, t: f32) -> Self {
        self.temperature = t;
        self
    }
    /// Keep the k most likely tokens; 0 disables.
    pub fn top_k(mut self, k: usize) -> Self {
        self.top_k = k;
        self
    }
    /// Nucleus sampling: keep the smallest set whose probability reaches p; 1 disables.
    pub fn top_p(mut self, p: f32) -> Self {
        self.top_p = p;
        self
    }
    /// Drop tokens less likely than p × the most likely one; 0 disables.
    pub fn min_p(mut self, p: f32) -> Self {
        self.min_p = p;
        self
    }
    /// Locally typical sampling; 1 disables.
    pub fn typical_p(mut self, p: f32) -> Self {
        self.typical_p = p;
        self
    }
    /// Divide positive logits (multiply negative ones) of recent tokens; 1 disables.
    pub fn repeat_penalty(mut self, p: f32) -> Self {
        self.repeat_penalty = p;
        self
    }
    /// Subtract `count × p` from recent tokens' logits; 0 disables.
    pub fn frequency_penalty(mut self, p: f32) -> Self {
        self.frequency_penalty = p;
        self
    }
    /// Subtract p from the logit of every recent token; 0 disables.
    pub fn presence_penalty(mut self, p: f32) -> Self {
        self.presence_penalty = p;
        self
    }
    /// How many recent tokens the penalties look at.
    pub fn penalty_last_n(mut self, n: usize) -> Self {
        self.penalty_last_n = n;
        self
    }
    /// Seed of the random draw.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self.rng = Rng::new(seed);
        self
    }
    /// Add `bias` to token `id`'s logit (ids outside the vocabulary are ignored).
    pub fn logit_bias(mut self, id: u32, bias: f32) -> Self {
        self.logit_bias.push((id, bias));
        self
    }

    /// True when the chain always picks the argmax.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// Check the options' ranges.
    pub fn validate(&self) -> Result<(), SamplingError> {
        let check = |name, value: f32, ok: bool, range| {
            if ok {
                Ok(())
            } else {
                Err(SamplingError::BadOption { name, value, range })
            }
        };
        check(
            "temperature",
            self.temperature,
            self.temperature.is_finite(),
            "finite",
        )?;
        check(
            "top_p",
            self.top_p,
            (0.0..=1.0).contains(&self.top_p),
            "0..=1",
        )?;
        check(
            "min_p",
            self.min_p,
            (0.0..=1.0).contains(&self.min_p),
            "0..=1",
        )?;
        check(
            "typical_p",
            self.typical_p,
            (0.0..=1.0).contains(&self.typical_p),
            "0..=1",
        )?;
        check(
            "repeat_penalty",
            self.repeat_penalty,
            self.repeat_penalty > 0.0 && self.repeat_penalty.is_finite(),
            "> 0",
        )?;
        check(
            "frequency_penalty",
            self.frequency_penalty,
            self.frequency_penalty.is_finite(),
            "finite",
        )?;
        check(
            "presence_penalty",
            self.presence_penalty,
            self.presence_penalty.is_finite(),
            "finite",
        )
    }

    /// Allocate the buffers for a vocabulary of `n_vocab` tokens and reset the state
    /// (history and random generator). After this, sampling allocates nothing.
    pub fn bind(&mut self, n_vocab: usize) {
        let (cands, history) = self.buffer_lens(n_vocab);
        self.n_vocab = n_vocab;
        self.cands.clear();
        self.cands.reserve_exact(cands);
        self.history.clear();
        self.history.resize(history, 0);
        self.reset();
    }

    /// Lengths of the buffers [`bind`](Self::bind) allocates: candidates, penalty history.
    fn buffer_lens(&self, n_vocab: usize) -> (usize, usize) {
        (n_vocab, self.penalty_last_n)
    }

    /// Bytes [`bind`](Self::bind) allocates for a vocabulary of `n_vocab` tokens (on a
    /// chain not bound before), or `None` if that overflows.
    pub(crate) fn bound_bytes(&self, n_vocab: usize) -> Option<usize> {
        let (cands, history) = self.buffer_lens(n_vocab);
        cands
            .checked_mul(core::mem::size_of::<Cand>())?
            .checked_add(history.checked_mul(core::mem::size_of::<u32>())?)
    }

    /// Forget the history and restart the random generator from the seed.
    pub fn reset(&mut self) {
        self.history_pos = 0;
        self.history_len = 0;
        self.rng = Rng::new(self.seed);
    }

    /// Record a token that is now part of the context (prompt or generated), for the
    /// penalties.
    pub fn accept(&mut self, id: u32) {
        let n = self.history.len();
        if n == 0 {
            return;
        }
        if let Some(slot) = self.history.get_mut(self.history_pos) {
            *slot = id;
        }
        self.history_pos = (self.history_pos + 1) % n;
        self.history_len = (self.history_len + 1).min(n);
    }

    fn recent(&self) -> impl Iterator<Item = u32> + '_ {
        self.history.iter().take(self.history_len).copied()
    }

    /// Pick the next token from `logits` (length = the bound vocabulary size). Does not
    /// [`accept`](Self::accept) it.
    pub fn sample(&mut self, logits: &[f32]) -> Result<Sampled, SamplingError> {
        if logits.len() != self.n_vocab {
            return Err(SamplingError::VocabMismatch {
                expected: self.n_vocab,
                found: logits.len(),
            });
        }
        // The kernel table of the level in use, looked up once per token.
        let k = crate::kernels::in_use();
        let logprob_of = |id: u32| raw_logprob(k, logits, id);

        let needs_cands = !self.is_greedy() || self.has_penalties() || !self.logit_bias.is_empty();
        if !needs_cands {
            let (id, max) = argmax_and_max(k, logits).ok_or(SamplingError::NoCandidates)?;
            return Ok(Sampled {
                id,
                logprob: k.log_softmax_at(logits, max, max),
            });
        }

        if !self.is_greedy()
            && !self.has_penalties()
            && self.logit_bias.is_empty()
            && self.top_k > 0
            && self.top_k < logits.len()
        {
            // Nothing changes the logits before top-k: take the k best in one pass.
            self.top_k_of(logits);
        } else {
            self.cands.clear();
            self.cands
                .extend(logits.iter().enumerate().map(|(i, &l)| Cand {
                    id: i as u32,
                    logit: l,
                    p: 0.0,
                }));
            self.apply_penalties();
            for &(id, bias) in &self.logit_bias {
                if let Some(c) = self.cands.get_mut(id as usize) {
                    c.logit += bias;
                }
            }
            self.cands
                .retain(|c| !c.logit.is_nan() && c.logit != f32::NEG_INFINITY);
        }
        if self.cands.is_empty() {
            return Err(SamplingError::NoCandidates);
        }
        if self.is_greedy() {
            let best = self
                .cands
                .iter()
                .fold(None::<Cand>, |b, &c| match b {
                    Some(b) if b.logit >= c.logit => Some(b),
                    _ => Some(c),
                })
                .ok_or(SamplingError::NoCandidates)?;
            return Ok(Sampled {
                id: best.id,
                logprob: logprob_of(best.id),
            });
        }

        // Sort descending by logit (ties by id), keeping only top-k first when it applies.
        if self.top_k > 0 && self.top_k < self.cands.len() {
            self.cands.select_nth_unstable_by(self.top_k - 1, by_logit);
            self.cands.truncate(self.top_k);
        }
        self.cands.sort_unstable_by(by_logit);

        softmax(&mut self.cands);
        if self.typical_p < 1.0 {
            self.typical();
        }
        if self.top_p < 1.0 {
            let mut cum = 0.0f32;
            let mut keep = self.cands.len();
            for (i, c) in self.cands.iter().enumerate() {
                cum += c.p;
                if cum >= self.top_p {
                    keep = i + 1;
                    break;
                }
            }
            self.cands.truncate(keep.max(1));
        }
        if self.min_p > 0.0 {
            if let Some(first) = self.cands.first() {
                let floor = first.logit + libm::logf(self.min_p);
                let keep = self.cands.iter().take_while(|c| c.logit >= floor).count();
                self.cands.truncate(keep.max(1));
            }
        }
        let t = self.temperature;
        for c in self.cands.iter_mut() {
            c.logit /= t;
        }
        softmax(&mut self.cands);

        let r = self.rng.next_f64() as f32;
        let mut cum = 0.0f32;
        let mut pick = self
            .cands
            .last()
            .map(|c| c.id)
            .ok_or(SamplingError::NoCandidates)?;
        for c in &self.cands {
            cum += c.p;
            if r < cum {
                pick = c.id;
                break;
            }
        }
        Ok(Sampled {
            id: pick,
            logprob: logprob_of(pick),
        })
    }

    /// The `top_k` (≥ 1) best of `logits` into `cands`, unsorted, NaN and −∞ left out:
    /// the set that building one candidate per token, dropping those, and partitioning
    /// at `top_k − 1` keeps, without doing that for the whole vocabulary (262,144
    /// candidates for Gemma 3: about 1.3 ms per token here). The order ([`by_logit`])
    /// is total, so its `top_k` best are one set.
    /// The pass keeps at most `2·top_k` candidates (within what [`bind`](Self::bind)
    /// reserved): when full, it keeps the best `top_k` and lets in only logits above the
    /// worst of them (an equal logit comes later in id, so after it in the order).
    fn top_k_of(&mut self, logits: &[f32]) {
        let k = self.top_k.max(1);
        let full = k.saturating_mul(2).min(self.cands.capacity()).max(k + 1);
        self.cands.clear();
        let mut floor: Option<f32> = None;
        for (i, &l) in logits.iter().enumerate() {
            if l.is_nan() || l == f32::NEG_INFINITY {
                continue;
            }
            if floor.is_some_and(|f| l.total_cmp(&f).is_le()) {
                continue;
            }
            self.cands.push(Cand {
                id: i as u32,
                logit: l,
                p: 0.0,
            });
            if self.cands.len() >= full {
                self.cands.select_nth_unstable_by(k - 1, by_logit);
                self.cands.truncate(k);
                floor = self.cands.iter().map(|c| c.logit).min_by(f32::total_cmp);
            }
        }
        if self.cands.len() > k {
            self.cands.select_nth_unstable_by(k - 1, by_logit);
            self.cands.truncate(k);
        }
    }

    /// Whether any of the repetition penalties changes the logits.
    fn has_penalties(&self) -> bool {
        self.repeat_penalty != 1.0 || self.frequency_penalty != 0.0 || self.presence_penalty != 0.0
    }

    fn apply_penalties(&mut self) {
        if !self.has_penalties() || self.history_len == 0 {
            return;
        }
        let n = self.history_len;
        for i in 0..n {
            let Some(&tok) = self.history.get(i) else {
                continue;
            };
            // Handle each distinct token once: skip if it appeared earlier in the window.
            if self.history.iter().take(i).any(|&t| t == tok) {
                continue;
            }
            let count = self.recent().filter(|&t| t == tok).count() as f32;
            if let Some(c) = self.cands.get_mut(tok as usize) {
                if c.logit <= 0.0 {
                    c.logit *= self.repeat_penalty;
                } else {
                    c.logit /= self.repeat_penalty;
                }
                c.logit -= count * self.frequency_penalty + self.presence_penalty;
            }
        }
    }

    fn typical(&mut self) {
        // Entropy of the distribution, then keep the tokens whose surprise is closest to it.
        let entropy: f32 = self
            .cands
            .iter()
            .filter(|c| c.p > 0.0)
            .map(|c| -c.p * libm::logf(c.p))
            .sum();
        for c in self.cands.iter_mut() {
            // `p` holds |surprise - entropy| until the softmax below restores probabilities.
            let surprise = if c.p > 0.0 {
                -libm::logf(c.p)
            } else {
                f32::INFINITY
            };
            c.p = (surprise - entropy).abs();
        }
        // Sort by distance; recover probabilities afterwards with a fresh softmax.
        self.cands
            .sort_unstable_by(|a, b| a.p.total_cmp(&b.p).then(a.id.cmp(&b.id)));
        softmax(&mut self.cands);
        let mut cum = 0.0f32;
        let mut keep = self.cands.len();
        for (i, c) in self.cands.iter().enumerate() {
            cum += c.p;
            if cum >= self.typical_p {
                keep = i + 1;
                break;
            }
        }
        self.cands.truncate(keep.max(1));
        self.cands
            .sort_unstable_by(|a, b| b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id)));
        softmax(&mut self.cands);
    }
}

/// The candidates' order: logit descending (by `total_cmp`), then id ascending.
fn by_logit(a: &Cand, b: &Cand) -> core::cmp::Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

/// Index of the largest logit (first on ties), skipping NaN.
pub fn argmax(logits: &[f32]) -> Option<u32> {
    argmax_and_max(crate::kernels::in_use(), logits).map(|(id, _)| id)
}

/// [`argmax`] and the maximum itself: the maximum, then its first position, two passes
/// the compiler vectorizes (the maximum with the kernels of `k`).
fn argmax_and_max(k: &Kernels, logits: &[f32]) -> Option<(u32, f32)> {
    let max = k.max_logit(logits);
    let id = logits.iter().position(|&l| l == max)?;
    Some((id as u32, max))
}

/// The log-probability of token `id` under the softmax of `logits` (−∞ for an id out
/// of range): the maximum, then `l − log Σ e^logit`, two passes over the whole
/// vocabulary with the kernels of `k` (the same bits at every level; see
/// `kernels::logits`).
fn raw_logprob(k: &Kernels, logits: &[f32], id: u32) -> f32 {
    match logits.get(id as usize) {
        Some(&l) => k.log_softmax_at(logits, l, k.max_logit(logits)),
        None => f32::NEG_INFINITY,
    }
}

fn softmax(c: &mut [Cand]) {
    let max = c.iter().map(|c| c.logit).fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for x in c.iter_mut() {
        x.p = libm::expf(x.logit - max);
        sum += x.p;
    }
    if sum > 0.0 {
        for x in c.iter_mut() {
            x.p /= sum;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_argmax_first_on_ties() {
        let mut s = SamplerChain::greedy();
        s.bind(4);
        assert_eq!(s.sample(&[1.0, 3.0, 3.0, f32::NAN]).unwrap().id, 1);
        assert!(s.sample(&[f32::NAN; 4]).is_err());
        // Against a first-best loop, over lengths around the 8 lanes, with NaN, ±0 and ±∞.
        let pool = [
            0.5f32,
            -0.0,
            0.0,
            f32::NAN,
            f32::NEG_INFINITY,
            2.0,
            -3.0,
            f32::INFINITY,
        ];
        for n in 1..40usize {
            for seed in 0..20usize {
                let l: Vec<f32> = (0..n)
                    .map(|i| pool[(i * 7 + seed * 13 + i * i * seed) % (pool.len() - 1 + seed % 2)])
                    .collect();
                let mut want: Option<(usize, f32)> = None;
                for (i, &v) in l.iter().enumerate() {
                    if !v.is_nan() && want.is_none_or(|(_, b)| v > b) {
                        want = Some((i, v));
                    }
                }
                let want = want.map(|(i, _)| i as u32);
                assert_eq!(argmax(&l), want, "{l:?}");
                let mut s = SamplerChain::greedy();
                s.bind(n);
                assert_eq!(s.sample(&l).ok().map(|p| p.id), want, "{l:?}");
            }
        }
    }

    #[test]
    fn seeded_draws_repeat_and_differ() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 17) as f32 * 0.1).collect();
        let run = |seed| {
            let mut s = SamplerChain::default()
                .top_k(0)
                .top_p(1.0)
                .min_p(0.0)
                .temperature(1.5)
                .seed(seed);
            s.bind(100);
            (0..64)
                .map(|_| s.sample(&logits).unwrap().id)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn top_k_pass_keeps_what_the_full_partition_keeps() {
        // An out-of-range logit bias changes nothing but sends `sample` down the path
        // that builds every candidate: the two must keep the same candidates.
        let mut st = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            st ^= st << 13;
            st ^= st >> 7;
            st ^= st << 17;
            st
        };
        for case in 0..300u64 {
            let n = 1 + (next() % 400) as usize;
            let logits: Vec<f32> = (0..n)
                .map(|_| match next() % 12 {
                    0 => 1.5,
                    1 => -0.0,
                    2 => 0.0,
                    3 => f32::NAN,
                    4 => f32::NEG_INFINITY,
                    _ => (next() % 2000) as f32 / 200.0 - 5.0,
                })
                .collect();
            for k in [1, 2, 3, 40, n / 2, n.saturating_sub(1)] {
                if k == 0 {
                    continue;
                }
                let chain = || {
                    SamplerChain::default()
                        .top_k(k)
                        .top_p(1.0)
                        .min_p(0.0)
                        .temperature(0.7)
                        .seed(case)
                };
                let (mut a, mut b) = (chain(), chain().logit_bias(u32::MAX, 0.0));
                a.bind(n);
                b.bind(n);
                assert_eq!(a.sample(&logits), b.sample(&logits), "case {case}, k {k}");
                let key = |c: &Cand| (c.id, c.logit.to_bits(), c.p.to_bits());
                let ka: Vec<_> = a.cands.iter().map(key).collect();
                let kb: Vec<_> = b.cands.iter().map(key).collect();
                assert_eq!(ka, kb, "case {case}, k {k}");
            }
        }
    }

    #[test]
    fn top_k_1_is_greedy_and_min_p_cuts() {
        let mut s = SamplerChain::default().top_k(1).seed(3);
        s.bind(5);
        for _ in 0..20 {
            assert_eq!(s.sample(&[0.0, 1.0, 5.0, 2.0, -1.0]).unwrap().id, 2);
        }
        let mut s = SamplerChain::default()
            .top_k(0)
            .top_p(1.0)
            .min_p(0.5)
            .temperature(1.0);
        s.bind(3);
        for _ in 0..50 {
            // exp(-10) relative probability is far under 0.5: only token 0 or 1 survive.
            assert_ne!(s.sample(&[3.0, 3.0, -7.0]).unwrap().id, 2);
        }
    }

    #[test]
    fn penalties_and_bias_change_the_pick() {
        let mut s = SamplerChain::greedy().repeat_penalty(4.0);
        s.bind(3);
        s.accept(0);
        // 2.0 / 4 = 0.5 < 1.0
        assert_eq!(s.sample(&[2.0, 1.0, 0.0]).unwrap().id, 1);
        let mut s = SamplerChain::greedy().logit_bias(2, 10.0);
        s.bind(3);
        assert_eq!(s.sample(&[2.0, 1.0, 0.0]).unwrap().id, 2);
        let mut s = SamplerChain::greedy()
            .frequency_penalty(1.0)
            .penalty_last_n(8);
        s.bind(3);
        s.accept(0);
        s.accept(0);
        assert_eq!(s.sample(&[2.5, 1.0, 0.0]).unwrap().id, 1);
    }

    #[test]
    fn typical_and_top_p_keep_something() {
        let mut s = SamplerChain::default().typical_p(0.2).top_p(0.1).seed(9);
        s.bind(6);
        for _ in 0..10 {
            let id = s.sample(&[0.1, 0.2, 0.3, 4.0, 0.0, -1.0]).unwrap().id;
            assert!(id < 6);
        }
        assert!(SamplerChain::default().top_p(1.5).validate().is_err());
    }

    #[test]
    fn raw_logprob_matches_f64_log_softmax() {
        // Lengths around the 8-lane blocks, values spread over ±40.
        for n in [1usize, 7, 8, 9, 17, 1000, 262_147] {
            let logits: Vec<f32> = (0..n)
                .map(|i| ((i.wrapping_mul(2_654_435_761) % 8001) as f32 - 4000.0) / 100.0)
                .collect();
            let max = logits
                .iter()
                .fold(f64::NEG_INFINITY, |a, &b| a.max(f64::from(b)));
            let sum: f64 = logits.iter().map(|&v| libm::exp(f64::from(v) - max)).sum();
            for id in [0, n / 2, n - 1] {
                let want = f64::from(logits[id]) - max - libm::log(sum);
                let got = f64::from(raw_logprob(crate::kernels::in_use(), &logits, id as u32));
                assert!(
                    (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "n {n} id {id}: {got} vs {want}"
                );
            }
        }
        // NaN logits count for nothing; an id out of range has no probability.
        let l = [0.0f32, f32::NAN, 0.0];
        assert!(
            (raw_logprob(crate::kernels::in_use(), &l, 0) - (-core::f32::consts::LN_2)).abs()
                < 1e-6
        );
        assert_eq!(
            raw_logprob(crate::kernels::in_use(), &l, 3),
            f32::NEG_INFINITY
        );
    }

    #[test]
    fn logprob_is_log_softmax() {
        let mut s = SamplerChain::greedy();
        s.bind(2);
        let p = s.sample(&[0.0, 0.0]).unwrap();
        assert!((p.logprob - (0.5f32).ln()).abs() < 1e-6);
    }
}

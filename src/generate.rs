//! Streaming generation: a prompt in, complete UTF-8 pieces out, one per token.
//!
//! ```
//! use tramontane::{GenerateOptions, Model, SamplerChain, SessionOptions};
//! # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/models-synth/llama-gqa-f16.gguf");
//! # let model = Model::from_vec(std::fs::read(path).unwrap())?;
//! // let model = Model::open("model.gguf")?;
//! let mut session = model.session(SessionOptions { context_len: 128, ..Default::default() })?;
//! let opts = GenerateOptions::default().max_tokens(16).sampler(SamplerChain::greedy());
//! let mut stream = session.generate("hello", opts)?;
//! let mut text = String::new();
//! while let Some(piece) = stream.next() {
//!     let piece = piece?;              // token id, text, log-probability
//!     text.push_str(piece.text);       // print!("{}", piece.text) to stream it
//! }
//! println!("{text} ({:?})", stream.stop_reason());
//! # Ok::<(), tramontane::Error>(())
//! ```
//!
//! # Why `TokenStream` is not an `Iterator`
//!
//! Each [`Piece`] borrows its text from a buffer inside the stream, allocated when the
//! stream is created, so that producing a token allocates nothing. An [`Iterator`]'s
//! items cannot borrow from the iterator (that would be a "lending iterator", which
//! `std` does not have), so it would have to hand out an owned `String` per token.
//! [`TokenStream::next`] is therefore an inherent method used with `while let`; the
//! borrow ends before the next call. [`Session::complete`] collects everything into a
//! [`Completion`] when allocation does not matter.
//!
//! # Stopping
//!
//! Generation stops at an end-of-generation token of the model (EOS, end of turn …, as
//! the tokenizer metadata lists them), after [`GenerateOptions::max_tokens`] tokens, at
//! a stop string, or when the [`crate::CancelHandle`] or a callback says so. Stop strings
//! are matched in the text across token boundaries; text that could be the start of a
//! stop string is held back until it is known not to be, and the stop string itself is
//! never emitted. [`TokenStream::stop_reason`] tells which one it was.

use alloc::string::String;
use alloc::vec::Vec;
use core::ops::ControlFlow;

use crate::model::ModelError;
use crate::sampling::{Sampled, SamplerChain};
use crate::session::{Session, SessionError};
use crate::tokenizer::Detokenizer;
use crate::Result;

/// How to generate: sampler, limits, stop strings. Built with its methods from
/// `GenerateOptions::default()` (256 tokens, llama.cpp's default sampler with seed 0).
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    max_tokens: usize,
    sampler: SamplerChain,
    stops: Vec<String>,
    parse_special: bool,
    render_special: bool,
    ignore_eog: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 256,
            sampler: SamplerChain::default(),
            stops: Vec::new(),
            parse_special: false,
            render_special: false,
            ignore_eog: false,
        }
    }
}

impl GenerateOptions {
    /// Stop after `n` generated tokens (counting an end-of-generation token).
    pub fn max_tokens(mut self, n: usize) -> Self {
        self.max_tokens = n;
        self
    }

    /// The sampler chain (see [`SamplerChain`]); it is bound to the vocabulary and fed
    /// the tokens already in the session (for the penalties) when generation starts.
    pub fn sampler(mut self, sampler: SamplerChain) -> Self {
        self.sampler = sampler;
        self
    }

    /// Add a stop string (empty strings are ignored).
    pub fn stop(mut self, s: impl Into<String>) -> Self {
        let s = s.into();
        if !s.is_empty() {
            self.stops.push(s);
        }
        self
    }

    /// Turn special-token text in the prompt (`<start_of_turn>`) into those tokens
    /// (default off: a user's text is only text).
    pub fn parse_special(mut self, on: bool) -> Self {
        self.parse_special = on;
        self
    }

    /// Write control tokens generated in the text as their text (default off: they
    /// give no text).
    pub fn render_special(mut self, on: bool) -> Self {
        self.render_special = on;
        self
    }

    /// Keep going after end-of-generation tokens (default off).
    pub fn ignore_eog(mut self, on: bool) -> Self {
        self.ignore_eog = on;
        self
    }
}

/// One generated token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Piece<'a> {
    /// The token id.
    pub token: u32,
    /// The text that became complete with this token: whole UTF-8 characters, possibly
    /// empty (a character still incomplete, a control token, text held back as the
    /// possible start of a stop string), possibly including held-back text of earlier
    /// tokens.
    pub text: &'a str,
    /// Natural log of the token's probability under the model (softmax of the raw
    /// logits, before the sampler chain).
    pub logprob: f32,
}

/// Why a stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// The model produced an end-of-generation token (yielded as the last piece).
    EndOfGeneration {
        /// The token.
        token: u32,
    },
    /// [`GenerateOptions::max_tokens`] tokens were generated.
    MaxTokens,
    /// A stop string appeared in the text; the text before it was emitted.
    StopString {
        /// Index of the stop string, in the order they were added.
        index: usize,
    },
    /// The [`crate::CancelHandle`] was triggered. Text held back as a possible stop-string
    /// start is dropped.
    Cancelled,
    /// The callback of [`Session::generate_with`] asked to stop.
    Callback,
}

/// The result of [`Session::complete`].
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// The generated text (without a stop string).
    pub text: String,
    /// The generated tokens, including an end-of-generation token.
    pub tokens: Vec<u32>,
    /// Why generation stopped.
    pub stop: StopReason,
}

/// A stream of generated [`Piece`]s, from [`Session::generate`]. Call
/// [`next`](TokenStream::next) in a `while let` loop (see the [module
/// documentation](self) for why this is not an `Iterator`).
///
/// Each generated token is run through the model at the start of the following
/// [`next`](TokenStream::next) call, so the last token of a stream is sampled but not
/// evaluated: the session keeps it as its [`pending
/// token`](Session::pending_token) and runs it first in the next call that evaluates.
#[derive(Debug)]
pub struct TokenStream<'s, 'm> {
    session: &'s mut Session<'m>,
    sampler: SamplerChain,
    stops: Vec<String>,
    max_tokens: usize,
    ignore_eog: bool,
    detok: Detokenizer,
    /// Decoded text not yet handed out, then (from 0 to `emitted`) the text of the piece
    /// just returned.
    hold: String,
    emitted: usize,
    n_gen: usize,
    done: bool,
    /// The next call reports that the context is full (context shift off).
    full_next: bool,
    stop: Option<StopReason>,
}

impl<'m> Session<'m> {
    /// Tokenize `prompt` (with BOS if the session is empty and the model asks for one;
    /// special-token text is parsed only with [`GenerateOptions::parse_special`]),
    /// evaluate it after what the session already holds, and return the stream of
    /// generated pieces.
    ///
    /// Errors: [`ModelError::ContextFull`] if the prompt does not fit (context shift
    /// off), [`SessionError::EmptyPrompt`] if there is nothing to generate from,
    /// [`SessionError::Cancelled`] if cancelled during prefill, sampler option errors.
    pub fn generate(
        &mut self,
        prompt: &str,
        options: GenerateOptions,
    ) -> Result<TokenStream<'_, 'm>> {
        let add_special = self.position() == 0 && self.pending.is_none();
        let ids = self
            .model
            .tokenizer()
            .encode(prompt, add_special, options.parse_special)?;
        self.generate_tokens(&ids, options)
    }

    /// Like [`generate`](Self::generate) with a tokenized prompt (nothing is added).
    /// An empty prompt continues from what the session holds.
    pub fn generate_tokens(
        &mut self,
        prompt: &[u32],
        options: GenerateOptions,
    ) -> Result<TokenStream<'_, 'm>> {
        options.sampler.validate()?;
        if prompt.is_empty() && self.pending.is_none() && self.logits().is_none() {
            return Err(SessionError::EmptyPrompt.into());
        }
        self.run(prompt)?;
        TokenStream::new(self, options)
    }

    /// Generate with a callback per piece instead of a loop: `on_piece` returns
    /// `ControlFlow::Break(())` to stop (then [`StopReason::Callback`]).
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use tramontane::{GenerateOptions, Model, SessionOptions, StopReason};
    /// # let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/models-synth/mistral-swa-q8_0.gguf");
    /// # let model = Model::open(path)?;
    /// let mut session = model.session(SessionOptions { context_len: 128, ..Default::default() })?;
    /// let mut text = String::new();
    /// let why = session.generate_with("Status:", GenerateOptions::default().ignore_eog(true), |piece| {
    ///     text.push_str(piece.text);
    ///     if text.len() > 20 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    /// })?;
    /// assert_eq!(why, StopReason::Callback);
    /// # Ok::<(), tramontane::Error>(())
    /// ```
    pub fn generate_with(
        &mut self,
        prompt: &str,
        options: GenerateOptions,
        mut on_piece: impl FnMut(Piece<'_>) -> ControlFlow<()>,
    ) -> Result<StopReason> {
        let mut stream = self.generate(prompt, options)?;
        while let Some(piece) = stream.next() {
            if on_piece(piece?).is_break() {
                stream.stop_now(StopReason::Callback);
                return Ok(StopReason::Callback);
            }
        }
        Ok(stream.stop_reason().unwrap_or(StopReason::MaxTokens))
    }

    /// Generate to the end and collect the text and tokens (allocates as it goes).
    pub fn complete(&mut self, prompt: &str, options: GenerateOptions) -> Result<Completion> {
        let mut stream = self.generate(prompt, options)?;
        let mut text = String::new();
        let mut tokens = Vec::new();
        while let Some(piece) = stream.next() {
            let piece = piece?;
            text.push_str(piece.text);
            tokens.push(piece.token);
        }
        Ok(Completion {
            text,
            tokens,
            stop: stream.stop_reason().unwrap_or(StopReason::MaxTokens),
        })
    }
}

/// Bytes of the text a [`TokenStream`] holds back: what is held back (less than the
/// longest stop string) plus one token's text (its piece, an incomplete character
/// carried over, U+FFFD replacements).
pub(crate) fn hold_capacity(tok: &crate::Tokenizer, stops: &[String]) -> usize {
    let max_stop = stops.iter().map(String::len).max().unwrap_or(0);
    max_stop
        .saturating_add(tok.max_piece_len().saturating_add(4).saturating_mul(3))
        .saturating_add(8)
}

impl GenerateOptions {
    /// The sampler chain and the stop strings, for [`crate::memory_plan_for`].
    pub(crate) fn parts(&self) -> (&SamplerChain, &[String]) {
        (&self.sampler, &self.stops)
    }
}

impl<'s, 'm> TokenStream<'s, 'm> {
    fn new(session: &'s mut Session<'m>, o: GenerateOptions) -> Result<TokenStream<'s, 'm>> {
        let tok = session.model.tokenizer();
        let mut sampler = o.sampler;
        sampler.bind(session.model.config().n_vocab);
        for &id in session.tokens().iter().chain(&session.pending) {
            sampler.accept(id);
        }
        let detok = tok
            .detokenizer()
            .strip_leading_space(false)
            .render_special(o.render_special);
        let mut hold = String::new();
        hold.reserve_exact(hold_capacity(tok, &o.stops));
        Ok(TokenStream {
            session,
            sampler,
            stops: o.stops,
            max_tokens: o.max_tokens,
            ignore_eog: o.ignore_eog,
            detok,
            hold,
            emitted: 0,
            n_gen: 0,
            done: o.max_tokens == 0,
            full_next: false,
            stop: (o.max_tokens == 0).then_some(StopReason::MaxTokens),
        })
    }

    /// The next piece, or `None` when generation has stopped (then see
    /// [`stop_reason`](Self::stop_reason)). An error ends the stream. With context
    /// shift off, a stream that fills the context yields its last piece, then
    /// `Some(Err(`[`ModelError::ContextFull`]`))`.
    ///
    /// After the first piece, this allocates nothing.
    #[allow(clippy::should_implement_trait)] // a lending stream: see the module docs
    pub fn next(&mut self) -> Option<Result<Piece<'_>>> {
        if self.emitted > 0 {
            self.hold.drain(..self.emitted.min(self.hold.len()));
            self.emitted = 0;
        }
        if self.done {
            if self.full_next {
                self.full_next = false;
                let n_ctx = self.session.context_len();
                return Some(Err(ModelError::ContextFull {
                    used: self.session.position(),
                    capacity: n_ctx,
                    requested: 1,
                }
                .into()));
            }
            return None;
        }
        match self.step() {
            Ok(Some(s)) => Some(Ok(Piece {
                token: s.id,
                text: self.hold.get(..self.emitted).unwrap_or(""),
                logprob: s.logprob,
            })),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }

    /// Why the stream stopped, once it has (`None` while it runs or after an error).
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop
    }

    /// Tokens generated so far.
    pub fn generated(&self) -> usize {
        self.n_gen
    }

    /// The session (position, tokens, cancel handle …).
    pub fn session(&self) -> &Session<'m> {
        self.session
    }

    /// End the stream now with `reason` (the next call returns `None`).
    pub(crate) fn stop_now(&mut self, reason: StopReason) {
        self.done = true;
        self.stop = Some(reason);
    }

    /// Sample one token and decide what text goes out with it.
    fn step(&mut self) -> Result<Option<Sampled>> {
        if self.session.cancel.take() {
            self.stop_now(StopReason::Cancelled);
            return Ok(None);
        }
        // Run the previous token (context shift happens here when it is on).
        self.session.run(&[])?;
        let logits = self.session.logits().ok_or(SessionError::NoLogits)?;
        let s = self.sampler.sample(logits)?;
        self.sampler.accept(s.id);
        self.session.pending = Some(s.id);
        self.n_gen += 1;
        let tok = self.session.model.tokenizer();
        if !self.ignore_eog && tok.is_eog(s.id) {
            self.flush();
            self.stop_now(StopReason::EndOfGeneration { token: s.id });
            return Ok(Some(s));
        }
        let text = self.detok.push(tok, s.id)?;
        self.hold.push_str(text);
        if let Some((at, index)) = find_stop(&self.hold, &self.stops) {
            self.hold.truncate(at);
            self.emitted = at;
            self.stop_now(StopReason::StopString { index });
            return Ok(Some(s));
        }
        if self.n_gen >= self.max_tokens {
            self.flush();
            self.stop_now(StopReason::MaxTokens);
        } else if !self.session.opts.context_shift
            && self.session.position() >= self.session.context_len()
        {
            // This token cannot be run: hand out everything, then report it.
            self.flush();
            self.done = true;
            self.full_next = true;
        } else {
            self.emitted = self.hold.len() - held_suffix(&self.hold, &self.stops);
        }
        Ok(Some(s))
    }

    /// Everything decoded goes out (an incomplete character as U+FFFD).
    fn flush(&mut self) {
        let rest = self.detok.finish();
        self.hold.push_str(rest);
        if let Some((at, index)) = find_stop(&self.hold, &self.stops) {
            self.hold.truncate(at);
            self.stop = Some(StopReason::StopString { index });
        }
        self.emitted = self.hold.len();
    }
}

/// The earliest occurrence of any stop string in `text`: (byte offset, stop index).
fn find_stop(text: &str, stops: &[String]) -> Option<(usize, usize)> {
    stops
        .iter()
        .enumerate()
        .filter_map(|(i, s)| text.find(s.as_str()).map(|at| (at, i)))
        .min()
}

/// Length of the longest end of `text` that is a proper start of a stop string (that
/// text must wait for the next token).
fn held_suffix(text: &str, stops: &[String]) -> usize {
    let t = text.as_bytes();
    stops
        .iter()
        .filter_map(|s| {
            let s = s.as_bytes();
            (1..s.len())
                .rev()
                .find(|&k| s.get(..k).is_some_and(|p| t.ends_with(p)))
        })
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn stop_matching() {
        let stops = vec!["\n\nUser:".to_string(), "END".to_string()];
        assert_eq!(find_stop("abc END x", &stops), Some((4, 1)));
        assert_eq!(find_stop("a\n\nUser: END", &stops), Some((1, 0)));
        assert_eq!(find_stop("abc EN", &stops), None);
        assert_eq!(held_suffix("abc EN", &stops), 2);
        assert_eq!(held_suffix("abc\n\nUs", &stops), 4);
        assert_eq!(held_suffix("abc", &stops), 0);
        // A suffix that is a whole stop string is found by find_stop, not held.
        assert_eq!(held_suffix("xEND", &stops), 0);
        let uni = vec!["é!".to_string()];
        assert_eq!(held_suffix("café", &uni), 2);
        assert_eq!(held_suffix("cafe", &uni), 0);
    }
}

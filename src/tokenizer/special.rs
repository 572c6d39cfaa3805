//! Splitting text around special tokens (llama.cpp's `tokenizer_st_partition`).
//!
//! llama.cpp takes the special tokens (control, user-defined and unknown ones; only the
//! user-defined ones when `parse_special` is off) longest first, and for each one cuts
//! every raw-text fragment at its leftmost non-overlapping occurrences. Done literally
//! that is one substring search per special token over the whole text (6,000+ searches
//! for Gemma). We get the same fragments by finding every occurrence of every special
//! token in one pass with a trie, keeping, per token, runs of consecutive start
//! positions as intervals (a run of spaces holds 30 space tokens at every position),
//! and then replaying llama.cpp's order on those occurrences only.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::{TokenAttr, Vocab};

const NONE: u32 = u32::MAX;

/// A piece of the input: raw text to tokenize, or a special token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fragment {
    /// `text[start..end]`.
    Text(usize, usize),
    Token(u32),
}

#[derive(Clone, Copy, Debug)]
struct Node {
    first_edge: u32,
    n_edges: u32,
    /// Index into `Specials::order` of the token ending here, or `NONE`.
    rank: u32,
}

/// The special tokens in llama.cpp's order, and a byte trie over their texts.
#[derive(Clone, Debug)]
pub(crate) struct Specials {
    /// Token ids, longest text first (ties: lower id first).
    order: Vec<u32>,
    nodes: Vec<Node>,
    /// (byte, child node), sorted by byte within each node.
    edges: Vec<(u8, u32)>,
    first_byte: [bool; 256],
}

impl Specials {
    /// Tokens whose attributes include control, user-defined or unknown.
    pub fn new(vocab: &Vocab) -> Specials {
        let special = TokenAttr::CONTROL.0 | TokenAttr::USER_DEFINED.0 | TokenAttr::UNKNOWN.0;
        let mut order: Vec<u32> = (0..vocab.len() as u32)
            .filter(|&id| vocab.attr(id).0 & special != 0)
            .collect();
        order.sort_by(|&a, &b| {
            vocab
                .text(b)
                .len()
                .cmp(&vocab.text(a).len())
                .then(a.cmp(&b))
        });
        let mut s = Specials {
            order,
            nodes: Vec::new(),
            edges: Vec::new(),
            first_byte: [false; 256],
        };
        s.build_trie(vocab);
        s
    }

    pub fn order(&self) -> &[u32] {
        &self.order
    }

    fn build_trie(&mut self, vocab: &Vocab) {
        // Ranks sorted by text: the texts below a node are a contiguous range, and the
        // children of a node are the groups of that range by the byte at its depth.
        let mut by_text: Vec<u32> = (0..self.order.len() as u32).collect();
        let text_of = |r: u32| vocab.text(self.order.get(r as usize).copied().unwrap_or(0));
        by_text.sort_by(|&a, &b| text_of(a).cmp(text_of(b)));
        // Breadth first, so that each node's children get consecutive ids.
        let mut queue: Vec<(usize, usize, usize)> = Vec::new(); // (lo, hi, depth) per node
        self.nodes.push(Node {
            first_edge: 0,
            n_edges: 0,
            rank: NONE,
        });
        queue.push((0, by_text.len(), 0));
        let mut head = 0;
        while let Some(&(lo, hi, depth)) = queue.get(head) {
            let node = head;
            head += 1;
            let mut i = lo;
            // A text that ends at this depth sorts first in the range.
            if let Some(&r) = by_text.get(i) {
                if i < hi && text_of(r).len() == depth {
                    if let Some(n) = self.nodes.get_mut(node) {
                        n.rank = r;
                    }
                    i += 1;
                }
            }
            let first_edge = self.edges.len() as u32;
            while i < hi {
                let Some(&b) = by_text.get(i).and_then(|&r| text_of(r).get(depth)) else {
                    i += 1;
                    continue;
                };
                let mut j = i + 1;
                while j < hi && by_text.get(j).and_then(|&r| text_of(r).get(depth)) == Some(&b) {
                    j += 1;
                }
                let child = self.nodes.len() as u32;
                self.nodes.push(Node {
                    first_edge: 0,
                    n_edges: 0,
                    rank: NONE,
                });
                self.edges.push((b, child));
                queue.push((i, j, depth + 1));
                if depth == 0 {
                    self.first_byte[b as usize] = true;
                }
                i = j;
            }
            if let Some(n) = self.nodes.get_mut(node) {
                n.first_edge = first_edge;
                n.n_edges = self.edges.len() as u32 - first_edge;
            }
        }
    }

    fn child(&self, node: u32, b: u8) -> Option<u32> {
        let n = self.nodes.get(node as usize)?;
        let edges = self
            .edges
            .get(n.first_edge as usize..(n.first_edge + n.n_edges) as usize)?;
        edges
            .binary_search_by_key(&b, |e| e.0)
            .ok()
            .and_then(|i| edges.get(i))
            .map(|e| e.1)
    }

    /// Split `text` as llama.cpp does; fragments in text order.
    pub fn partition(
        &self,
        vocab: &Vocab,
        text: &str,
        parse_special: bool,
        out: &mut Vec<Fragment>,
    ) {
        out.clear();
        if text.is_empty() {
            return;
        }
        let bytes = text.as_bytes();
        let allowed = |rank: u32| {
            let id = self.order.get(rank as usize).copied().unwrap_or(0);
            let a = vocab.attr(id).0;
            parse_special || a & (TokenAttr::CONTROL.0 | TokenAttr::UNKNOWN.0) == 0
        };

        // 1. Every occurrence, as intervals of consecutive start positions per rank.
        let mut intervals: Vec<(u32, usize, usize)> = Vec::new(); // (rank, first start, last start)
        let mut last: Vec<u32> = Vec::new(); // per rank: index of its latest interval
        for (i, &b) in bytes.iter().enumerate() {
            if !self.first_byte[b as usize] {
                continue;
            }
            let mut node = 0u32;
            for &c in &bytes[i..] {
                let Some(next) = self.child(node, c) else {
                    break;
                };
                node = next;
                let rank = self.nodes.get(node as usize).map_or(NONE, |n| n.rank);
                if rank == NONE || !allowed(rank) {
                    continue;
                }
                if last.is_empty() {
                    last.resize(self.order.len(), NONE);
                }
                let Some(slot) = last.get_mut(rank as usize) else {
                    continue;
                };
                match intervals.get_mut(*slot as usize) {
                    Some(iv) if iv.2 + 1 == i => iv.2 = i,
                    _ => {
                        *slot = intervals.len() as u32;
                        intervals.push((rank, i, i));
                    }
                }
            }
        }
        if intervals.is_empty() {
            out.push(Fragment::Text(0, bytes.len()));
            return;
        }
        intervals.sort_unstable();

        // 2. Replay: rank by rank, leftmost non-overlapping occurrences that lie inside
        //    a raw-text fragment cut it in two.
        let mut raw: BTreeMap<usize, usize> = BTreeMap::new();
        raw.insert(0, bytes.len());
        let mut found: Vec<(usize, u32)> = Vec::new();
        for &(rank, a, b) in &intervals {
            let id = self.order.get(rank as usize).copied().unwrap_or(0);
            let len = vocab.text(id).len();
            let attr = vocab.attr(id);
            let mut s = a;
            while s <= b {
                // The fragment holding `s`, or the next one.
                let frag = raw
                    .range(..=s)
                    .next_back()
                    .filter(|&(_, &e)| e > s)
                    .or_else(|| raw.range(s + 1..).next())
                    .map(|(&fs, &fe)| (fs, fe));
                let Some((fs, fe)) = frag else { break };
                s = s.max(fs);
                if s > b {
                    break;
                }
                if s + len > fe {
                    s = fe;
                    continue;
                }
                raw.remove(&fs);
                let mut left_end = s;
                if attr.contains(TokenAttr::LSTRIP) {
                    while left_end > fs && bytes.get(left_end - 1).is_some_and(|&c| is_c_space(c)) {
                        left_end -= 1;
                    }
                }
                if left_end > fs {
                    raw.insert(fs, left_end);
                }
                let mut right_start = s + len;
                if attr.contains(TokenAttr::RSTRIP) {
                    while right_start < fe && bytes.get(right_start).is_some_and(|&c| is_c_space(c))
                    {
                        right_start += 1;
                    }
                }
                if right_start < fe {
                    raw.insert(right_start, fe);
                }
                found.push((s, id));
                s += len.max(1);
            }
        }

        // 3. Merge raw fragments and tokens by position.
        found.sort_unstable();
        let mut tokens = found.iter().peekable();
        for (&fs, &fe) in &raw {
            while let Some(&&(p, id)) = tokens.peek() {
                if p >= fs {
                    break;
                }
                out.push(Fragment::Token(id));
                tokens.next();
            }
            out.push(Fragment::Text(fs, fe));
        }
        out.extend(tokens.map(|&(_, id)| Fragment::Token(id)));
    }
}

/// `isspace` in the "C" locale.
fn is_c_space(c: u8) -> bool {
    matches!(c, 0x09..=0x0D | 0x20)
}

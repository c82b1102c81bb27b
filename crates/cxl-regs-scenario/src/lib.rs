// SPDX-License-Identifier: GPL-2.0-or-later
//! Byte-driven register sessions with invariant checks, shared by the
//! property tests and the `cargo fuzz` target (`fuzz/`), so both explore
//! the same space and assert the same rules.
//!
//! The input bytes pick a decoder configuration, then a sequence of
//! operations: raw dword writes anywhere in the structure, writes biased
//! towards values that commit (bases and sizes near the window, Commit and
//! Lock On Commit bits), and resets. After every operation the invariants
//! of [`check_hdm`] must hold.

use cxl_regs::hdm::{self, DecoderControl, DecoderKind, HdmConfig, HdmDecoderBlock, HdmEvent};
use cxl_regs::window::{HpaRange, HDM_ALIGN};

/// What a session did, for tests that check the space was explored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub writes: u32,
    pub commits: u32,
    pub failed_commits: u32,
    pub outside_window: u32,
    pub decommits: u32,
    pub resets: u32,
}

/// A broken rule: what and after which operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub step: usize,
    pub rule: String,
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes([
            self.byte()?,
            self.byte()?,
            self.byte()?,
            self.byte()?,
        ]))
    }
}

/// The configuration encoded by the first bytes of `input`.
fn config(input: &mut Input<'_>) -> Option<HdmConfig> {
    let shape = input.byte()?;
    let decoder_count = [1, 2, 4][usize::from(shape % 3)];
    let window = HpaRange::new(
        u64::from(input.byte()?) * HDM_ALIGN + (1 << 32),
        (u64::from(input.byte()? % 16) + 1) * HDM_ALIGN,
    );
    let capacity = (u64::from(input.byte()? % 16) + 1) * HDM_ALIGN;
    let kind = if shape & 0x80 != 0 {
        DecoderKind::Port { target_count: 4 }
    } else {
        DecoderKind::Device {
            dpa_capacity: capacity,
        }
    };
    Some(HdmConfig {
        kind,
        decoder_count,
        window,
        max_ways: [1, 2, 4, 16][usize::from(shape >> 2 & 3)],
        interleave_3_6_12: shape & 0x10 != 0,
        interleave_16: shape & 0x20 != 0,
        poison_on_decode_error: shape & 0x40 != 0,
    })
}

/// Checks the rules every reachable state obeys.
pub fn check_hdm(block: &HdmDecoderBlock) -> Result<(), String> {
    let config = block.config();
    if block.read(hdm::CAPABILITY) != config.capability().0 {
        return Err("the capability register changed".into());
    }
    let committed: Vec<_> = block
        .decoders()
        .iter()
        .enumerate()
        .filter(|(_, d)| d.committed())
        .collect();
    for &(n, d) in &committed {
        if !config.window.contains_range(&d.range()) {
            return Err(format!(
                "decoder {n} committed {:x?} outside the window {:x?}",
                d.range(),
                config.window
            ));
        }
        if d.base % HDM_ALIGN != 0 || d.size % HDM_ALIGN != 0 {
            return Err(format!(
                "decoder {n} committed an unaligned range {:x?}",
                d.range()
            ));
        }
        if d.control.is_set(DecoderControl::ERROR_NOT_COMMITTED) {
            return Err(format!("decoder {n} is both committed and in error"));
        }
        if let DecoderKind::Device { dpa_capacity } = config.kind {
            let ways =
                cxl_regs::window::eiw_to_ways(d.control.get(DecoderControl::IW) as u8).unwrap_or(0);
            let end = d.dpa_base + d.size / u64::from(ways.max(1));
            if ways == 0 || end > dpa_capacity {
                return Err(format!(
                    "decoder {n} maps DPA up to {end:#x} beyond {dpa_capacity:#x}"
                ));
            }
        }
    }
    for pair in committed.windows(2) {
        let ((a, da), (b, db)) = (pair[0], pair[1]);
        if da.range().overlaps(&db.range()) || db.base < da.base {
            return Err(format!(
                "committed decoders {a} and {b} overlap or are out of order"
            ));
        }
    }
    Ok(())
}

/// Runs the session encoded in `data`; returns what it did or the first
/// rule it broke. Never panics on any input.
pub fn run_hdm(data: &[u8]) -> Result<Stats, Violation> {
    let mut input = Input(data);
    let Some(config) = config(&mut input) else {
        return Ok(Stats::default());
    };
    let mut block = HdmDecoderBlock::new(config);
    let mut locked: Vec<Option<hdm::Decoder>> = vec![None; config.decoder_count as usize];
    let mut stats = Stats::default();
    let len = block.len();
    for step in 0.. {
        let Some(op) = input.byte() else { break };
        let Some(arg) = input.byte() else { break };
        // Decoder 0 most of the time: higher ones only commit on top of it.
        let n = if arg & 0xc0 == 0 {
            u32::from(arg) % config.decoder_count
        } else {
            0
        };
        let event = match op % 16 {
            // Reset.
            0 => {
                block.reset();
                locked.iter_mut().for_each(|l| *l = None);
                stats.resets += 1;
                None
            }
            // A raw dword anywhere (aligned or not, in range or not).
            1 => {
                let Some(value) = input.u32() else { break };
                let offset = u32::from(arg) * 4 % (len + 0x40) + u32::from(op >> 7);
                block.write(offset, value)
            }
            // A base near the window.
            2..=5 => {
                // Mostly inside or just around the window, sometimes far away.
                let pick = input.byte().unwrap_or(0);
                let units = if pick & 0xe0 != 0xe0 {
                    i64::from(pick % 12) - 2
                } else {
                    i64::from(pick as i8) * 64
                };
                let delta = units * HDM_ALIGN as i64;
                let base = config.window.base.wrapping_add_signed(delta);
                block.write(hdm::base_high(n), (base >> 32) as u32);
                block.write(hdm::base_low(n), base as u32)
            }
            // A size in 256 MiB units, sometimes huge.
            6..=8 => {
                let units = u64::from(input.byte().unwrap_or(0));
                let size = match units {
                    0xff => !(HDM_ALIGN - 1),
                    0xe0.. => units % 20 * HDM_ALIGN,
                    _ => (units % 4 + 1) * HDM_ALIGN,
                };
                block.write(hdm::size_high(n), (size >> 32) as u32);
                block.write(hdm::size_low(n), size as u32)
            }
            // DPA skip / targets.
            9 => {
                let skip = u64::from(input.byte().unwrap_or(0) % 8) * HDM_ALIGN;
                block.write(hdm::target_or_skip_low(n), skip as u32)
            }
            // Commit with random IW/IG/lock, or decommit.
            _ => {
                let bits = input.byte().unwrap_or(0);
                let control = DecoderControl::default()
                    .with(DecoderControl::COMMIT, u64::from(op & 0x80 == 0))
                    .with(DecoderControl::LOCK_ON_COMMIT, u64::from(bits & 7 == 1))
                    .with(
                        DecoderControl::IW,
                        if bits & 6 == 0 {
                            u64::from(bits >> 3) % 11
                        } else {
                            0
                        },
                    )
                    .with(
                        DecoderControl::IG,
                        if bits & 0x80 != 0 {
                            u64::from(bits >> 4 & 7)
                        } else {
                            0
                        },
                    );
                block.write(hdm::control(n), control.0)
            }
        };
        stats.writes += 1;
        match event {
            Some(HdmEvent::Committed { .. }) => stats.commits += 1,
            Some(HdmEvent::CommitFailed { error, .. }) => {
                stats.failed_commits += 1;
                if matches!(error, hdm::CommitError::OutsideWindow { .. }) {
                    stats.outside_window += 1;
                }
            }
            Some(HdmEvent::Decommitted { .. }) => stats.decommits += 1,
            None => {}
        }
        check_hdm(&block).map_err(|rule| Violation { step, rule })?;
        for (i, (snapshot, now)) in locked.iter_mut().zip(block.decoders()).enumerate() {
            match snapshot {
                Some(s) if s != now => {
                    return Err(Violation {
                        step,
                        rule: format!("locked decoder {i} changed: {s:x?} -> {now:x?}"),
                    })
                }
                Some(_) => {}
                None if now.locked() => *snapshot = Some(*now),
                None => {}
            }
        }
    }
    Ok(stats)
}

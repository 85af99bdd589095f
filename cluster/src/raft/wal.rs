//! The Raft log as an append-only file (`raft.wal`), written sequentially and synced with one
//! `fdatasync` per appended batch.
//!
//! Why not redb, where the rest of the Raft state lives: a redb commit rewrites B-tree pages
//! scattered over the file, and on the virtual disks Skiff runs on that made every durable append
//! take 30–80 ms, long enough for followers to miss heartbeats under write load. A sequential
//! append is what etcd's WAL does too.
//!
//! Format: records back to back, each `len: u32 LE | crc32: u32 LE | index: u64 LE | entry`,
//! where `len` counts the index and the entry bytes and the CRC-32 (IEEE) covers them. Indices
//! are contiguous. On open the file is read to its end; the first record that is cut short, fails
//! its checksum or breaks the sequence ends the log there (the tail of an append that crashed
//! before its sync, never acknowledged) and the file is truncated to it. `truncate` cuts the file.
//! `forget` drops a prefix from the index only: the records stay at the head of the file (a dead
//! prefix, still contiguous with the live records) until `compact` rewrites the file without them
//! (write a new file, sync, rename, sync the directory), so a crash leaves either the old or the
//! new file. Raft purges the log after every snapshot; rewriting the file each time cost a purge
//! 10–15 ms of file I/O and fsyncs, during which openraft's core (which awaits the purge) stalled
//! every write, so a purge only compacts when the dead prefix is large ([`Wal::needs_compaction`]).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read as _};
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

const HEADER: u64 = 8;
/// A record larger than this is corruption, not an entry (Raft entries are small commands).
const MAX_RECORD: u32 = 64 << 20;
/// A dead prefix (forgotten records at the head of the file) at least this large, and at least as
/// large as the live part, makes [`Wal::needs_compaction`] ask for a rewrite: the rewrite costs
/// about the live part, so its cost is spread over many purges.
const COMPACT_MIN_BYTES: u64 = 16 << 20;

/// Where one record's payload (index + entry bytes) sits in the file.
#[derive(Clone, Copy, Debug)]
struct Slot {
    index: u64,
    /// Offset of the record's header.
    at: u64,
    /// Length of the payload (8 + entry bytes).
    len: u32,
}

/// The open log file and the position of every record in it.
#[derive(Debug)]
pub(crate) struct Wal {
    path: PathBuf,
    file: File,
    /// The live records, in order; records before the first one's offset are dead (forgotten).
    slots: VecDeque<Slot>,
    end: u64,
    /// See [`COMPACT_MIN_BYTES`] (smaller in tests).
    compact_min: u64,
}

/// What [`Wal::open`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Recovery {
    /// Bytes cut off the end (a torn or corrupt tail).
    pub truncated_bytes: u64,
}

impl Wal {
    /// Opens (or creates, mode 0600) the log at `path` and reads where every record is.
    pub(crate) fn open(path: &Path) -> io::Result<(Wal, Recovery)> {
        let mut file = open_file(path)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)?;
        let mut slots = VecDeque::new();
        let mut pos = 0usize;
        while let Some(slot) = parse_record(&data, pos, slots.back()) {
            pos = (slot.at + HEADER + u64::from(slot.len)) as usize;
            slots.push_back(slot);
        }
        let mut recovery = Recovery::default();
        if pos < data.len() {
            recovery.truncated_bytes = (data.len() - pos) as u64;
            file.set_len(pos as u64)?;
            file.sync_all()?;
        }
        Ok((
            Wal {
                path: path.to_path_buf(),
                file,
                slots,
                end: pos as u64,
                compact_min: COMPACT_MIN_BYTES,
            },
            recovery,
        ))
    }

    /// The index the next appended record must have (`None`: any, the log is empty).
    fn next_index(&self) -> Option<u64> {
        self.slots.back().map(|s| s.index + 1)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Appends records `(index, entry bytes)` and syncs them before returning.
    pub(crate) fn append(&mut self, records: &[(u64, Vec<u8>)]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        let mut new_slots = Vec::with_capacity(records.len());
        let mut expect = self.next_index();
        let mut at = self.end;
        for (index, bytes) in records {
            if expect.is_some_and(|e| e != *index) {
                return Err(io::Error::other(format!(
                    "log append out of order: index {index} after {}",
                    expect.map_or(0, |e| e - 1)
                )));
            }
            let len = u32::try_from(bytes.len() + 8)
                .ok()
                .filter(|l| *l <= MAX_RECORD)
                .ok_or_else(|| io::Error::other(format!("log entry {index} is too large")))?;
            let mut payload = Vec::with_capacity(len as usize);
            payload.extend_from_slice(&index.to_le_bytes());
            payload.extend_from_slice(bytes);
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(&crc32(&payload).to_le_bytes());
            buf.extend_from_slice(&payload);
            new_slots.push(Slot {
                index: *index,
                at,
                len,
            });
            at += HEADER + u64::from(len);
            expect = Some(index + 1);
        }
        self.file.write_all_at(&buf, self.end)?;
        self.file.sync_data()?;
        self.end = at;
        self.slots.extend(new_slots);
        Ok(())
    }

    /// The entries with an index in `range`, as `(index, bytes)`, in order.
    pub(crate) fn read(&self, range: impl RangeBounds<u64>) -> io::Result<Vec<(u64, Vec<u8>)>> {
        let Some(first) = self.slots.front().map(|s| s.index) else {
            return Ok(Vec::new());
        };
        let from = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => first,
        }
        .max(first);
        let mut out = Vec::new();
        let skip = (from - first) as usize;
        for slot in self.slots.iter().skip(skip) {
            if !range.contains(&slot.index) {
                break;
            }
            out.push((slot.index, self.read_slot(slot)?));
        }
        Ok(out)
    }

    /// The last entry, as `(index, bytes)`.
    pub(crate) fn last(&self) -> io::Result<Option<(u64, Vec<u8>)>> {
        match self.slots.back() {
            Some(s) => Ok(Some((s.index, self.read_slot(s)?))),
            None => Ok(None),
        }
    }

    fn read_slot(&self, slot: &Slot) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; slot.len as usize - 8];
        self.file.read_exact_at(&mut buf, slot.at + HEADER + 8)?;
        Ok(buf)
    }

    /// Removes every entry with an index `>= from`.
    pub(crate) fn truncate(&mut self, from: u64) -> io::Result<()> {
        let keep = self.slots.iter().take_while(|s| s.index < from).count();
        if keep == self.slots.len() {
            return Ok(());
        }
        let end = self.slots[keep].at;
        self.file.set_len(end)?;
        self.file.sync_all()?;
        self.slots.truncate(keep);
        self.end = end;
        Ok(())
    }

    /// Removes every entry with an index `<= upto`, rewriting the file without them.
    pub(crate) fn purge(&mut self, upto: u64) -> io::Result<()> {
        self.forget(upto);
        self.compact()
    }

    /// Forgets every entry with an index `<= upto`: it is no longer read, but its record stays in
    /// the file until [`compact`](Self::compact). Reopening the file brings forgotten records back
    /// (they are valid, contiguous entries): the caller keeps its own record of what was purged.
    pub(crate) fn forget(&mut self, upto: u64) {
        let drop = self.slots.iter().take_while(|s| s.index <= upto).count();
        self.slots.drain(..drop);
    }

    /// Bytes of forgotten records at the head of the file.
    fn dead_bytes(&self) -> u64 {
        self.slots.front().map_or(self.end, |s| s.at)
    }

    /// Whether the file should be rewritten without its forgotten records: always once every
    /// record is forgotten (a snapshot was installed, and the next append may start at any index,
    /// which must not follow the old records in the file), else when the dead prefix is at least
    /// [`COMPACT_MIN_BYTES`] and at least as large as the live part.
    pub(crate) fn needs_compaction(&self) -> bool {
        let dead = self.dead_bytes();
        dead > 0 && (self.slots.is_empty() || dead >= self.compact_min.max(self.end - dead))
    }

    /// Rewrites the file without its forgotten records (new file, sync, rename, sync the
    /// directory).
    pub(crate) fn compact(&mut self) -> io::Result<()> {
        let start = self.dead_bytes();
        if start == 0 {
            return Ok(());
        }
        let mut tail = vec![0u8; (self.end - start) as usize];
        self.file.read_exact_at(&mut tail, start)?;
        let tmp = self.path.with_extension("wal.tmp");
        {
            let f = open_file(&tmp)?;
            f.set_len(0)?;
            f.write_all_at(&tail, 0)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        self.file = open_file(&self.path)?;
        for s in &mut self.slots {
            s.at -= start;
        }
        self.end -= start;
        Ok(())
    }
}

fn open_file(path: &Path) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        o.mode(0o600);
    }
    o.open(path)
}

/// The record at `pos`, if it is whole, passes its checksum and follows `prev`.
fn parse_record(data: &[u8], pos: usize, prev: Option<&Slot>) -> Option<Slot> {
    let header = data.get(pos..pos + HEADER as usize)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?);
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if !(8..=MAX_RECORD).contains(&len) {
        return None;
    }
    let start = pos + HEADER as usize;
    let payload = data.get(start..start + len as usize)?;
    if crc32(payload) != crc {
        return None;
    }
    let index = u64::from_le_bytes(payload[0..8].try_into().ok()?);
    if prev.is_some_and(|p| p.index + 1 != index) {
        return None;
    }
    Some(Slot {
        index,
        at: pos as u64,
        len,
    })
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32 (IEEE 802.3), as zlib computes it.
fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for b in data {
        c = CRC_TABLE[((c ^ u32::from(*b)) & 0xFF) as usize] ^ (c >> 8);
    }
    c ^ 0xFFFF_FFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recs(r: std::ops::RangeInclusive<u64>) -> Vec<(u64, Vec<u8>)> {
        r.map(|i| (i, format!("entry {i}").into_bytes())).collect()
    }

    #[test]
    fn crc_matches_zlib() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn append_read_truncate_purge_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.wal");
        let (mut wal, rec) = Wal::open(&path).unwrap();
        assert_eq!(rec, Recovery::default());
        wal.append(&recs(1..=5)).unwrap();
        wal.append(&recs(6..=10)).unwrap();
        assert!(wal.append(&recs(12..=12)).is_err(), "gaps are refused");
        assert_eq!(wal.read(3..5).unwrap(), recs(3..=4));
        assert_eq!(wal.read(..).unwrap(), recs(1..=10));
        assert_eq!(wal.last().unwrap(), Some((10, b"entry 10".to_vec())));
        wal.truncate(8).unwrap();
        assert_eq!(wal.last().unwrap().unwrap().0, 7);
        wal.append(&recs(8..=9)).unwrap();
        wal.purge(3).unwrap();
        assert_eq!(wal.read(..).unwrap(), recs(4..=9));
        assert_eq!(wal.read(0..5).unwrap(), recs(4..=4));
        drop(wal);

        let (mut wal, rec) = Wal::open(&path).unwrap();
        assert_eq!(rec, Recovery::default());
        assert_eq!(wal.read(..).unwrap(), recs(4..=9));
        wal.purge(9).unwrap();
        assert!(wal.is_empty());
        // After everything was purged (a snapshot was installed), the log restarts anywhere.
        wal.append(&recs(100..=101)).unwrap();
        drop(wal);
        let (wal, _) = Wal::open(&path).unwrap();
        assert_eq!(wal.read(..).unwrap(), recs(100..=101));
    }

    #[test]
    fn forgotten_records_stay_in_the_file_until_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.wal");
        let (mut wal, _) = Wal::open(&path).unwrap();
        wal.append(&recs(1..=10)).unwrap();
        let size = wal.end;
        wal.forget(4);
        assert_eq!(wal.read(..).unwrap(), recs(5..=10));
        assert_eq!(wal.read(0..6).unwrap(), recs(5..=5));
        assert!(!wal.needs_compaction(), "a small dead prefix stays");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
        // Appends and truncation work behind a dead prefix.
        wal.append(&recs(11..=12)).unwrap();
        wal.truncate(12).unwrap();
        assert_eq!(wal.last().unwrap().unwrap().0, 11);
        drop(wal);
        // Reopened, the forgotten records are back (the caller forgets them again).
        let (mut wal, rec) = Wal::open(&path).unwrap();
        assert_eq!(rec, Recovery::default());
        assert_eq!(wal.read(..).unwrap(), recs(1..=11));
        wal.forget(4);
        // A dead prefix at least compact_min and at least the live part asks for a rewrite.
        wal.compact_min = 1;
        assert!(
            !wal.needs_compaction(),
            "dead part smaller than the live part"
        );
        wal.forget(7);
        assert!(wal.needs_compaction());
        wal.compact().unwrap();
        assert!(!wal.needs_compaction());
        assert_eq!(wal.read(..).unwrap(), recs(8..=11));
        wal.append(&recs(12..=12)).unwrap();
        drop(wal);
        let (wal, _) = Wal::open(&path).unwrap();
        assert_eq!(wal.read(..).unwrap(), recs(8..=12));
    }

    #[test]
    fn forgetting_every_record_asks_for_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.wal");
        let (mut wal, _) = Wal::open(&path).unwrap();
        assert!(
            !wal.needs_compaction(),
            "an empty file has nothing to compact"
        );
        wal.append(&recs(1..=3)).unwrap();
        wal.forget(3);
        assert!(wal.is_empty());
        assert!(
            wal.needs_compaction(),
            "the next append may start anywhere: the old records must go first"
        );
        wal.compact().unwrap();
        wal.append(&recs(50..=51)).unwrap();
        drop(wal);
        let (wal, rec) = Wal::open(&path).unwrap();
        assert_eq!(rec, Recovery::default());
        assert_eq!(wal.read(..).unwrap(), recs(50..=51));
    }

    #[test]
    fn a_torn_or_corrupt_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.wal");
        let (mut wal, _) = Wal::open(&path).unwrap();
        wal.append(&recs(1..=3)).unwrap();
        let good = wal.end;
        drop(wal);
        // Half a record at the end: a crash in the middle of an append.
        let mut data = std::fs::read(&path).unwrap();
        data.extend_from_slice(&[20, 0, 0, 0, 1, 2]);
        std::fs::write(&path, &data).unwrap();
        let (wal, rec) = Wal::open(&path).unwrap();
        assert_eq!(rec.truncated_bytes, 6);
        assert_eq!(wal.read(..).unwrap(), recs(1..=3));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good);
        drop(wal);
        // A flipped bit in the last record: it and everything after it go.
        let mut data = std::fs::read(&path).unwrap();
        let n = data.len();
        data[n - 1] ^= 0x40;
        std::fs::write(&path, &data).unwrap();
        let (wal, rec) = Wal::open(&path).unwrap();
        assert!(rec.truncated_bytes > 0);
        assert_eq!(wal.read(..).unwrap(), recs(1..=2));
        // Garbage of any kind never panics.
        drop(wal);
        std::fs::write(&path, [0xFFu8; 64]).unwrap();
        let (wal, rec) = Wal::open(&path).unwrap();
        assert!(wal.is_empty());
        assert_eq!(rec.truncated_bytes, 64);
    }
}

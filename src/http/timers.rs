//! A timer wheel for connection deadlines, so that a sweep costs what is due rather than what is
//! open. Time is cut into ticks of one sweep interval; a key is filed under the tick its
//! deadline falls in (the last slot of the wheel if it is further away, to be filed again when
//! that comes). Filing is cheap and entries are not removed one by one: the owner remembers the
//! tick under which each key is filed and ignores entries under any other, and has the wheel
//! drop the stale ones ([`Timers::retain`]) once they outnumber the live ones, so that its
//! memory follows the connections open, not those opened. A pure value: every instant is
//! passed in.

use std::mem;
use std::time::{Duration, Instant};

pub struct Timers {
    slots: Vec<Vec<(u64, u64)>>,
    epoch: Instant,
    tick: Duration,
    /// The first tick not yet returned by [`Timers::due`].
    next: u64,
    /// Entries filed and not yet returned or dropped.
    filed: usize,
}

impl Timers {
    /// `slots` ticks of `tick` each are told apart; later deadlines wait in the last.
    pub fn new(epoch: Instant, tick: Duration, slots: usize) -> Timers {
        Timers {
            slots: vec![Vec::new(); slots.max(1)],
            epoch,
            tick,
            next: 0,
            filed: 0,
        }
    }

    /// Entries filed and not yet returned or dropped, stale ones included.
    pub fn len(&self) -> usize {
        self.filed
    }

    /// Keeps only the entries `live` says are still wanted, and gives back what the slots
    /// hold beyond their need.
    pub fn retain(&mut self, mut live: impl FnMut(u64, u64) -> bool) {
        for slot in &mut self.slots {
            slot.retain(|(key, tick)| live(*key, *tick));
            if slot.capacity() > 2 * slot.len() {
                slot.shrink_to_fit();
            }
        }
        self.filed = self.slots.iter().map(Vec::len).sum();
    }

    /// The tick `at` falls in, as it would be filed now.
    pub fn tick_of(&self, at: Instant) -> u64 {
        let tick = (at.saturating_duration_since(self.epoch).as_nanos()
            / self.tick.as_nanos().max(1)) as u64;
        tick.clamp(self.next, self.next + self.slots.len() as u64 - 1)
    }

    /// Files `key` for `at`; returns the tick it is filed under.
    pub fn schedule(&mut self, key: u64, at: Instant) -> u64 {
        let tick = self.tick_of(at);
        let slot = (tick % self.slots.len() as u64) as usize;
        self.slots[slot].push((key, tick));
        self.filed += 1;
        tick
    }

    /// Moves into `out` every `(key, tick)` filed under a tick that has begun by `now`.
    pub fn due(&mut self, now: Instant, out: &mut Vec<(u64, u64)>) {
        let last = (now.saturating_duration_since(self.epoch).as_nanos()
            / self.tick.as_nanos().max(1)) as u64;
        if last < self.next {
            return;
        }
        // Past a whole turn, every slot is due once.
        for tick in self.next..=last.min(self.next + self.slots.len() as u64 - 1) {
            let slot = (tick % self.slots.len() as u64) as usize;
            self.filed -= self.slots[slot].len();
            out.append(&mut mem::take(&mut self.slots[slot]));
        }
        self.next = last + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(100);

    fn due(t: &mut Timers, now: Instant) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        t.due(now, &mut out);
        out
    }

    #[test]
    fn a_key_comes_due_in_the_tick_of_its_deadline_and_not_before() {
        let epoch = Instant::now();
        let mut t = Timers::new(epoch, TICK, 8);
        let tick = t.schedule(1, epoch + Duration::from_millis(350));
        assert_eq!(tick, 3);
        assert!(due(&mut t, epoch + Duration::from_millis(299)).is_empty());
        assert_eq!(due(&mut t, epoch + Duration::from_millis(300)), [(1, 3)]);
        assert!(due(&mut t, epoch + Duration::from_millis(900)).is_empty());
    }

    #[test]
    fn a_past_deadline_is_due_at_the_next_sweep_and_a_far_one_waits_in_the_last_slot() {
        let epoch = Instant::now();
        let mut t = Timers::new(epoch, TICK, 8);
        assert!(due(&mut t, epoch + Duration::from_millis(250)).is_empty());
        // Already past: filed under the first tick not yet swept.
        assert_eq!(t.schedule(1, epoch), 3);
        // An hour away: filed under the wheel's last tick, to be filed again then.
        assert_eq!(t.schedule(2, epoch + Duration::from_secs(3600)), 10);
        assert_eq!(due(&mut t, epoch + Duration::from_millis(300)), [(1, 3)]);
        assert_eq!(due(&mut t, epoch + Duration::from_millis(1050)), [(2, 10)]);
    }

    #[test]
    fn a_sweep_long_after_returns_every_key_once() {
        let epoch = Instant::now();
        let mut t = Timers::new(epoch, TICK, 4);
        for key in 0..4 {
            t.schedule(key, epoch + TICK * key as u32);
        }
        let mut keys: Vec<u64> = due(&mut t, epoch + Duration::from_secs(60))
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        keys.sort();
        assert_eq!(keys, [0, 1, 2, 3]);
        assert!(due(&mut t, epoch + Duration::from_secs(61)).is_empty());
    }

    #[test]
    fn stale_entries_are_dropped_and_the_live_ones_still_come_due() {
        let epoch = Instant::now();
        let mut t = Timers::new(epoch, TICK, 8);
        for key in 0..100 {
            t.schedule(key, epoch + Duration::from_millis(300));
        }
        assert_eq!(t.len(), 100);
        t.retain(|key, _| key % 10 == 0);
        assert_eq!(t.len(), 10);
        let keys: Vec<u64> = due(&mut t, epoch + Duration::from_millis(300))
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, (0..100).step_by(10).collect::<Vec<_>>());
        assert_eq!(t.len(), 0);
    }
}

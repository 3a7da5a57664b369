use std::{
    cell::Cell,
    fmt::{self, Write},
    time::{Duration, Instant, SystemTime},
};


/// "Thu, 01 Jan 1970 00:00:00 GMT".len()
pub(crate) const DATE_VALUE_LENGTH: usize = 29;

#[derive(Clone, Copy)]
pub(crate) struct Date {
    pub(crate) bytes: [u8; DATE_VALUE_LENGTH],
    pos: usize,
}

impl Date {
    fn new() -> Date {
        let mut date = Date {
            bytes: [0; DATE_VALUE_LENGTH],
            pos: 0,
        };
        date.update();
        date
    }

    fn update(&mut self) {
        self.pos = 0;
        write!(self, "{}", httpdate::HttpDate::from(SystemTime::now())).unwrap();
    }
}

impl fmt::Write for Date {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let len = s.len();
        self.bytes[self.pos..self.pos + len].copy_from_slice(s.as_bytes());
        self.pos += len;
        Ok(())
    }
}

/// The date and the time, made when asked for and at most 500 ms old.
///
/// ipcbus (vendor/README.md): upstream keeps them fresh with a 500 ms timer
/// task on every worker, which wakes an idle server twice a second.
pub(crate) struct DateService {
    current: Cell<(Date, Instant)>,
}

impl DateService {
    pub(crate) fn new() -> Self {
        DateService { current: Cell::new((Date::new(), Instant::now())) }
    }

    fn fresh(&self) -> (Date, Instant) {
        let (date, at) = self.current.get();
        let now = Instant::now();
        if now.duration_since(at) < Duration::from_millis(500) {
            return (date, at);
        }
        let new = (Date::new(), now);
        self.current.set(new);
        new
    }

    pub(crate) fn now(&self) -> Instant {
        self.fresh().1
    }

    pub(crate) fn with_date<F: FnMut(&Date)>(&self, mut f: F) {
        f(&self.fresh().0);
    }
}

impl fmt::Debug for DateService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DateService").finish_non_exhaustive()
    }
}


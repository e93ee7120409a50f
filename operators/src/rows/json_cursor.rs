//! JSON read the way serde_json reads it, one line at a time, for the row
//! scan ([`super::scan`]): white space, literals, strings without escapes,
//! numbers as serde hands them to a visitor, and values checked and
//! dropped as serde's `IgnoredAny` drops them. Every method returns `None`
//! where the input is not what it handles exactly as serde does, and the
//! caller then leaves the line to serde.

/// Deepest nesting of arrays and objects the scan follows (serde_json's
/// limit is 128; deeper lines go to serde).
pub const MAX_DEPTH: u32 = 64;

/// Powers of ten that `f64` holds exactly.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// A JSON number as serde_json reads it: an integer significand and a
/// decimal exponent.
pub(super) struct Number {
    /// Written with a leading `-`.
    pub negative: bool,
    /// Every digit, before and after the point, as one integer.
    pub significand: u64,
    /// The power of ten the significand is scaled by.
    pub exponent: i32,
    /// Written without a fraction or an exponent.
    pub integer: bool,
}

impl Number {
    /// The `f64` serde hands to a visitor, or `None` where serde's float
    /// algorithm (which depends on its build features) could round otherwise.
    pub fn value(&self) -> Option<f64> {
        let s = self.significand;
        if self.integer {
            return Some(match self.negative {
                false => s as f64,
                // serde_json: `-0` and magnitudes past i64 are floats.
                true => match (s as i64).wrapping_neg() {
                    n if n >= 0 => -(s as f64),
                    n => n as f64,
                },
            });
        }
        let scale = *POW10.get(self.exponent.unsigned_abs() as usize)?;
        if s > 1 << 53 {
            return None;
        }
        let f = if self.exponent >= 0 { s as f64 * scale } else { s as f64 / scale };
        Some(if self.negative { -f } else { f })
    }
}

/// A position in one line, read as serde_json reads JSON.
pub(super) struct Cursor<'a> {
    /// The line.
    pub s: &'a [u8],
    /// The next byte to read.
    pub i: usize,
    /// Some string held a byte over 0x7f: the line must then be checked as
    /// UTF-8 (serde reads text).
    pub non_ascii: bool,
}

impl<'a> Cursor<'a> {
    pub(super) fn peek(&self) -> u8 {
        self.s.get(self.i).copied().unwrap_or(0)
    }

    pub(super) fn bump(&mut self) -> Option<u8> {
        let b = self.s.get(self.i).copied()?;
        self.i += 1;
        Some(b)
    }

    pub(super) fn eat(&mut self, byte: u8) -> Option<()> {
        (self.bump()? == byte).then_some(())
    }

    /// Skips JSON white space (space, tab, line feed, carriage return).
    pub(super) fn ws(&mut self) {
        while matches!(self.peek(), b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    pub(super) fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.s.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// A string without escapes or control characters; its raw bytes.
    pub(super) fn string(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        for (k, &b) in self.s[start..].iter().enumerate() {
            match b {
                b'"' => {
                    self.i = start + k + 1;
                    return Some(&self.s[start..start + k]);
                }
                b'\\' | 0..=0x1f => return None,
                0x80.. => self.non_ascii = true,
                _ => {}
            }
        }
        None
    }

    /// Digits from here onto `significand`; `counted` counts the
    /// significand's digits (under 20 cannot overflow a `u64`, so only
    /// the 20th and later are checked). Returns how many were read here.
    ///
    /// Eight bytes at a time where the line has them: the word's leading
    /// digits are found and folded into one integer without a branch per
    /// digit ([`leading_digits`], [`fold_digits`]); the same integer as
    /// one digit at a time, which still reads the last bytes of a line and
    /// any digit past the 19th. Inlined: called out of line, with its
    /// results through pointers, it was slower than the byte loop.
    #[inline(always)]
    fn digits(&mut self, significand: &mut u64, counted: &mut u32) -> Option<u32> {
        let start = self.i;
        while let Some(word) = load8(self.s, self.i) {
            let values = word ^ ZEROS;
            let n = leading_digits(values);
            if n == 0 || *counted + n > 19 {
                break;
            }
            *significand = *significand * POW10_U64[n as usize] + fold_digits(values, n);
            *counted += n;
            self.i += n as usize;
            if n < 8 {
                return Some((self.i - start) as u32);
            }
        }
        while let d @ b'0'..=b'9' = self.peek() {
            if *counted < 19 {
                *significand = *significand * 10 + u64::from(d - b'0');
            } else {
                *significand = significand.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            }
            *counted += 1;
            self.i += 1;
        }
        Some((self.i - start) as u32)
    }

    /// A number in JSON's grammar whose significand fits a `u64`.
    pub(super) fn number(&mut self) -> Option<Number> {
        let negative = self.peek() == b'-';
        if negative {
            self.i += 1;
        }
        let (mut significand, mut counted) = (0u64, 0u32);
        match self.peek() {
            b'0' => {
                self.i += 1;
                counted = 1;
                if self.peek().is_ascii_digit() {
                    return None;
                }
            }
            b'1'..=b'9' => {
                self.digits(&mut significand, &mut counted)?;
            }
            _ => return None,
        }
        let mut exponent = 0i32;
        let mut integer = true;
        if self.peek() == b'.' {
            self.i += 1;
            integer = false;
            let fraction = self.digits(&mut significand, &mut counted)?;
            if fraction == 0 {
                return None;
            }
            exponent = -(fraction as i32);
        }
        if matches!(self.peek(), b'e' | b'E') {
            self.i += 1;
            integer = false;
            let negative_exponent = self.peek() == b'-';
            if matches!(self.peek(), b'-' | b'+') {
                self.i += 1;
            }
            let start = self.i;
            let mut e = 0i32;
            while let d @ b'0'..=b'9' = self.peek() {
                e = e.checked_mul(10)?.checked_add(i32::from(d - b'0'))?;
                self.i += 1;
            }
            if self.i == start {
                return None;
            }
            exponent = if negative_exponent { exponent.checked_sub(e)? } else { exponent.checked_add(e)? };
        }
        Some(Number { negative, significand, exponent, integer })
    }

    /// The elements of an array whose `[` was just read: `element` parses
    /// each given its position. Returns how many there were.
    pub(super) fn array_body(
        &mut self,
        depth: u32,
        mut element: impl FnMut(&mut Self, usize) -> Option<()>,
    ) -> Option<usize> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        if self.peek() == b']' {
            self.i += 1;
            return Some(0);
        }
        let mut n = 0;
        loop {
            element(self, n)?;
            n += 1;
            self.ws();
            match self.bump()? {
                b',' => self.ws(),
                b']' => return Some(n),
                _ => return None,
            }
        }
    }

    /// Any JSON value, checked and dropped (serde's `IgnoredAny`); a
    /// container at this position would sit at `depth`. One loop with a
    /// stack of bits (object or array per open level) instead of recursion:
    /// most of what a row ignores is nested (`top_procs`).
    pub(super) fn skip(&mut self, depth: u32) -> Option<()> {
        let mut objects = 0u64;
        let mut open = 0u32;
        'value: loop {
            match self.peek() {
                b @ (b'{' | b'[') => {
                    if depth + open > MAX_DEPTH {
                        return None;
                    }
                    let object = b == b'{';
                    self.i += 1;
                    objects = (objects << 1) | u64::from(object);
                    open += 1;
                    self.ws();
                    match (self.peek(), object) {
                        (b'}', true) | (b']', false) => self.i += 1,
                        (_, true) => {
                            self.member_key()?;
                            continue 'value;
                        }
                        (_, false) => continue 'value,
                    }
                    objects >>= 1;
                    open -= 1;
                }
                b'"' => {
                    self.string()?;
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                b'-' | b'0'..=b'9' => self.skip_number()?,
                _ => return None,
            }
            // After a value: a comma, or the closing of its container.
            while open > 0 {
                self.ws();
                let in_object = objects & 1 == 1;
                match self.bump()? {
                    b',' => {
                        self.ws();
                        if in_object {
                            self.member_key()?;
                        }
                        continue 'value;
                    }
                    b'}' if in_object => {}
                    b']' if !in_object => {}
                    _ => return None,
                }
                objects >>= 1;
                open -= 1;
            }
            return Some(());
        }
    }

    /// An object member's key and colon, up to its value.
    fn member_key(&mut self) -> Option<()> {
        self.string()?;
        self.ws();
        self.eat(b':')?;
        self.ws();
        Some(())
    }

    /// A non-negative integer of at most 19 digits (so it fits a `u64`)
    /// — every number of most telemetry rows — read a word at a time
    /// without [`Self::number`]'s general path: its significand. `None`,
    /// having read nothing, for any other number (a sign, a fraction, an
    /// exponent, a leading zero, more digits), for anything else, and
    /// where the line ends less than eight bytes after its last digit.
    #[inline]
    pub(super) fn plain_integer(&mut self) -> Option<u64> {
        let (mut integer, mut digits) = (0u64, 0u32);
        loop {
            let values = load8(self.s, self.i + digits as usize)? ^ ZEROS;
            let n = leading_digits(values);
            if digits + n > 19 {
                return None;
            }
            if n > 0 {
                integer = integer * POW10_U64[n as usize] + fold_digits(values, n);
                digits += n;
            }
            if n < 8 {
                // Leading zeros are not JSON; a point or an exponent makes a float.
                let after = (values >> (8 * n)) as u8 ^ b'0';
                let leading_zero = digits > 1 && self.s[self.i] == b'0';
                if digits == 0 || leading_zero || matches!(after, b'.' | b'e' | b'E') {
                    return None;
                }
                self.i += digits as usize;
                return Some(integer);
            }
        }
    }

    /// A number in JSON's grammar, checked and dropped: serde reads an
    /// ignored number's digits without computing its value, so no size is
    /// out of range here.
    fn skip_number(&mut self) -> Option<()> {
        if self.peek() == b'-' {
            self.i += 1;
        }
        match self.bump()? {
            b'0' if self.peek().is_ascii_digit() => return None,
            b'0'..=b'9' => {
                self.skip_digits();
            }
            _ => return None,
        }
        if self.peek() == b'.' {
            self.i += 1;
            if self.skip_digits() == 0 {
                return None;
            }
        }
        if matches!(self.peek(), b'e' | b'E') {
            self.i += 1;
            if matches!(self.peek(), b'+' | b'-') {
                self.i += 1;
            }
            if self.skip_digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    /// Moves past a run of digits; returns its length.
    fn skip_digits(&mut self) -> usize {
        let start = self.i;
        while let Some(word) = load8(self.s, self.i) {
            let n = leading_digits(word ^ ZEROS);
            self.i += n as usize;
            if n < 8 {
                return self.i - start;
            }
        }
        while self.peek().is_ascii_digit() {
            self.i += 1;
        }
        self.i - start
    }

    /// Whether the line holds `member` (an object's key, colon and value)
    /// here, followed by what may follow a member (a comma, the object's
    /// `}` or white space), so that a number or a literal ending it is no
    /// longer than in `member`.
    pub(super) fn member_at(&self, member: &[u8]) -> bool {
        let end = self.i + member.len();
        let same = match member.len() {
            // A call to `memcmp` costs more than the comparison of a short member.
            ..=16 => starts_with_at(self.s, self.i, member),
            _ => self.s.get(self.i..end) == Some(member),
        };
        same && matches!(self.s.get(end), Some(b',' | b'}' | b' ' | b'\t' | b'\n' | b'\r'))
    }

    /// Whether the line holds `key` here, compared eight bytes at a time
    /// (keys are short: a call to `memcmp` costs more than the comparison).
    #[inline]
    pub(super) fn at(&self, key: &[u8]) -> bool {
        starts_with_at(self.s, self.i, key)
    }
}

/// `'0'` in every byte of a word: XOR-ed with eight bytes of text, it
/// leaves each digit's value in its byte.
const ZEROS: u64 = 0x3030_3030_3030_3030;

/// `10^n` for the digits a word can hold.
const POW10_U64: [u64; 9] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000];

/// How many of a word's bytes, first byte lowest and each XOR-ed with
/// [`ZEROS`], are digits before the first that is not (0 to 8). A byte
/// was a digit when it is now at most 9: adding 0x76 to its low seven bits
/// sets its high bit otherwise (without carrying into the next byte), and
/// a byte that had its high bit set is no digit either.
#[inline]
fn leading_digits(values: u64) -> u32 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let not_digit = (((values & LOW7) + 0x7676_7676_7676_7676) | values) & HIGH;
    not_digit.trailing_zeros() / 8
}

/// The integer the first `n` (1 to 8) digit values of a word spell, the
/// first byte the most significant: the digits are moved to the top of the
/// word (zeros before them), then pairs, fours and the eight are combined
/// with one multiply each.
#[inline]
fn fold_digits(values: u64, n: u32) -> u64 {
    let v = values << (8 * (8 - n));
    let v = ((v & 0x0f0f_0f0f_0f0f_0f0f).wrapping_mul(10 << 8 | 1)) >> 8;
    let v = ((v & 0x00ff_00ff_00ff_00ff).wrapping_mul(100 << 16 | 1)) >> 16;
    ((v & 0x0000_ffff_0000_ffff).wrapping_mul(10_000 << 32 | 1)) >> 32
}

/// The eight bytes of `s` from `i`, first byte lowest; `None` near the end.
#[inline]
fn load8(s: &[u8], i: usize) -> Option<u64> {
    s.get(i..i.checked_add(8)?).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes)
}

/// Whether `s` holds `key` at `i`.
#[inline]
fn starts_with_at(s: &[u8], i: usize, key: &[u8]) -> bool {
    let n = key.len();
    if n < 8 {
        return s.get(i..i + n) == Some(key);
    }
    let mut k = 0;
    while k + 8 < n {
        if load8(s, i + k) != load8(key, k) {
            return false;
        }
        k += 8;
    }
    // The last eight bytes, overlapping the words already compared.
    load8(s, i + n - 8).is_some() && load8(s, i + n - 8) == load8(key, n - 8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_word_counts_its_leading_digits_whatever_byte_ends_them() {
        for end in 0..8 {
            for byte in 0..=255u8 {
                let mut word = *b"12345678";
                word[end] = byte;
                let expected = if byte.is_ascii_digit() { 8 } else { end as u32 };
                assert_eq!(leading_digits(u64::from_le_bytes(word) ^ ZEROS), expected, "byte {byte:#x} at {end}");
            }
        }
        assert_eq!(leading_digits(u64::from_le_bytes(*b"90817263") ^ ZEROS), 8);
    }

    #[test]
    fn folded_digits_are_the_integer_they_spell() {
        for text in ["0", "7", "10", "09", "123", "4567", "89012", "345678", "9012345", "99999999", "10000000"] {
            let mut word = [b','; 8];
            word[..text.len()].copy_from_slice(text.as_bytes());
            let n = text.len() as u32;
            assert_eq!(fold_digits(u64::from_le_bytes(word) ^ ZEROS, n), text.parse::<u64>().unwrap(), "{text}");
        }
    }

    /// Reads a number at the start of `line` and where it stopped.
    fn read(line: &[u8]) -> (Option<(bool, u64, i32, bool)>, usize) {
        let mut c = Cursor { s: line, i: 0, non_ascii: false };
        let n = c.number().map(|n| (n.negative, n.significand, n.exponent, n.integer));
        (n, c.i)
    }

    proptest! {
        /// Where the plain path reads a number, it is the number the general
        /// path reads, to the same byte; and it reads every plain integer of
        /// up to 19 digits with eight bytes of line after its last digit.
        #[test]
        fn plain_integers_are_read_as_the_general_path_reads_them(
            number in "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,3})?([eE][0-9])?|0[0-9]{1,3}",
            after in r"[,}\] a.eE0-9x]{0,17}",
        ) {
            let line = format!("{number}{after}");
            let mut plain = Cursor { s: line.as_bytes(), i: 0, non_ascii: false };
            let mut general = Cursor { s: line.as_bytes(), i: 0, non_ascii: false };
            let read = general.number().map(|n| (n.negative, n.significand, n.exponent, n.integer));
            match plain.plain_integer() {
                Some(integer) => {
                    prop_assert_eq!(Some((false, integer, 0, true)), read);
                    prop_assert_eq!(plain.i, general.i);
                }
                None => {
                    prop_assert_eq!(plain.i, 0, "nothing read");
                    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
                    let plain_digits = (1..=19).contains(&digits) && !line.starts_with('0') || digits == 1;
                    let ends = !matches!(line.as_bytes().get(digits), Some(b'.' | b'e' | b'E'));
                    let room = line.len() >= (digits / 8 + 1) * 8;
                    prop_assert!(!(plain_digits && ends && room), "{} left to the general path", line);
                }
            }
        }
    }

    proptest! {
        /// Numbers of any length, from one digit to past a `u64`, read the
        /// same whether the line has eight bytes after each position or
        /// ends right after the number, and stop at the byte after them.
        #[test]
        fn numbers_read_by_words_are_the_numbers_written(
            int in "-?(0|[1-9][0-9]{0,24})",
            fraction in proptest::option::of("[0-9]{1,24}"),
            exponent in proptest::option::of(-30i32..30),
            after in r"[,}\] a.e0-9]{0,12}",
        ) {
            let mut text = int.clone();
            if let Some(f) = &fraction {
                text.push('.');
                text.push_str(f);
            }
            if let Some(e) = exponent {
                text.push_str(&format!("e{e}"));
            }
            let digits: String = text.trim_start_matches('-').split(['e']).next().unwrap().replace('.', "");
            let expected = digits.parse::<u64>().ok();
            let whole = format!("{text}{after}");
            let (n, stop) = read(whole.as_bytes());
            // A digit, point or exponent right after the number continues it.
            if after.starts_with(|c: char| c.is_ascii_digit() || c == '.' || c == 'e') {
                return Ok(());
            }
            match expected {
                Some(significand) => {
                    let (negative, read_significand, read_exponent, integer) = n.expect("a number");
                    prop_assert_eq!(negative, int.starts_with('-'));
                    prop_assert_eq!(read_significand, significand);
                    let fraction_len = fraction.as_ref().map_or(0, |f| f.len() as i32);
                    prop_assert_eq!(read_exponent, exponent.unwrap_or(0) - fraction_len);
                    prop_assert_eq!(integer, fraction.is_none() && exponent.is_none());
                    prop_assert_eq!(stop, text.len());
                }
                None => prop_assert!(n.is_none(), "a significand past u64 is left to serde"),
            }
            let (alone, alone_stop) = read(text.as_bytes());
            prop_assert_eq!(alone, n);
            if n.is_some() {
                prop_assert_eq!(alone_stop, text.len());
            }
        }
    }

    #[test]
    fn keys_are_matched_whole_at_every_length_and_near_the_end() {
        let line = br#"{"net":1,"rss_bytes":2,"mem_available_bytes":3}"#;
        let at = |i: usize, key: &[u8]| Cursor { s: line, i, non_ascii: false }.at(key);
        assert!(at(1, br#""net""#));
        assert!(at(9, br#""rss_bytes""#));
        assert!(at(23, br#""mem_available_bytes""#));
        assert!(!at(23, br#""mem_available_bytez""#), "a difference in the last word");
        assert!(!at(23, br#""nem_available_bytes""#), "a difference in the first word");
        assert!(!at(9, br#""rss_bytes_x""#));
        assert!(!at(line.len() - 3, br#"3}xxxxxx"#), "past the end of the line");
        assert!(at(line.len() - 8, &line[line.len() - 8..]), "a key of eight bytes that ends the line");
        assert!(at(line.len() - 9, &line[line.len() - 9..]), "one of nine");
    }
}

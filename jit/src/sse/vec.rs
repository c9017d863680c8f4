//! Lanes of 128-bit vectors: lane access and lane-wise maps.

/// Mask of a `bits`-wide lane (8, 16, 32 or 64).
#[inline(always)]
pub const fn lane_mask(bits: u32) -> u64 {
    u64::MAX >> (64 - bits)
}

/// Lane `i` of `v` (lanes of `bits` bits, lane 0 lowest), zero-extended.
#[inline(always)]
pub fn lane(v: u128, bits: u32, i: u32) -> u64 {
    (v >> (i * bits)) as u64 & lane_mask(bits)
}

/// `v` with lane `i` replaced by the low `bits` bits of `x`.
#[inline(always)]
pub fn set_lane(v: u128, bits: u32, i: u32, x: u64) -> u128 {
    let m = (lane_mask(bits) as u128) << (i * bits);
    (v & !m) | (((x & lane_mask(bits)) as u128) << (i * bits))
}

/// Apply `f` to each pair of lanes.
#[inline(always)]
pub fn map2(a: u128, b: u128, bits: u32, mut f: impl FnMut(u64, u64) -> u64) -> u128 {
    let mut r = 0u128;
    for i in 0..128 / bits {
        let x = f(lane(a, bits, i), lane(b, bits, i)) & lane_mask(bits);
        r |= (x as u128) << (i * bits);
    }
    r
}

/// Apply `f` to each lane.
#[inline(always)]
pub fn map1(a: u128, bits: u32, mut f: impl FnMut(u64) -> u64) -> u128 {
    map2(a, 0, bits, |x, _| f(x))
}

/// Sign-extend a `bits`-wide value to i64.
#[inline(always)]
pub fn sext(x: u64, bits: u32) -> i64 {
    ((x << (64 - bits)) as i64) >> (64 - bits)
}

/// The low 64 bits.
#[inline(always)]
pub fn lo(v: u128) -> u64 {
    v as u64
}

/// The high 64 bits.
#[inline(always)]
pub fn hi(v: u128) -> u64 {
    (v >> 64) as u64
}

/// A vector from its two halves.
#[inline(always)]
pub fn join(lo: u64, hi: u64) -> u128 {
    (hi as u128) << 64 | lo as u128
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_round_trip() {
        let v = 0x0011_2233_4455_6677_8899_aabb_ccdd_eeffu128;
        assert_eq!(lane(v, 16, 7), 0x0011);
        assert_eq!(lane(v, 8, 0), 0xff);
        assert_eq!(
            set_lane(v, 32, 1, 0x1234_5678) >> 32 & 0xffff_ffff,
            0x1234_5678
        );
        assert_eq!(map2(v, v, 8, |a, b| a ^ b), 0);
        assert_eq!(join(lo(v), hi(v)), v);
    }
}

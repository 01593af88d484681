//! Which instruction set the kernels run with, chosen once at run time:
//! AVX-512 (with VNNI where the CPU has it), AVX2, or plain Rust that the
//! compiler vectorises itself. The best this CPU has is used unless the
//! configuration caps it ([`SimdCap`]: to compare kernels, or on a CPU that
//! misreports its features); nothing here reads the environment.

use serde::Deserialize;

#[cfg(target_arch = "x86_64")]
pulp::simd_type! {
    /// AVX-512 with VNNI: the compiler fuses each multiply-add of 16-bit
    /// pairs and its sum into one `vpdpwssd`.
    pub struct V4Vnni {
        pub avx512f: "avx512f",
        pub avx512bw: "avx512bw",
        pub avx512cd: "avx512cd",
        pub avx512dq: "avx512dq",
        pub avx512vl: "avx512vl",
        pub avx512vnni: "avx512vnni",
        pub avx2: "avx2",
        pub fma: "fma",
    }
}

/// The widest instruction set the kernels may use, as configured
/// (`best`, `avx512`, `avx2`, `portable`; empty means `best`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SimdCap {
    #[default]
    #[serde(alias = "")]
    Best,
    Avx512,
    Avx2,
    Portable,
}

impl SimdCap {
    /// Every cap, narrowest first: what tests and benchmarks compare.
    pub const ALL: [SimdCap; 4] = [
        SimdCap::Portable,
        SimdCap::Avx2,
        SimdCap::Avx512,
        SimdCap::Best,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SimdCap::Best => "best",
            SimdCap::Avx512 => "avx512",
            SimdCap::Avx2 => "avx2",
            SimdCap::Portable => "portable",
        }
    }
}

/// The instruction set the kernels run with.
#[derive(Clone, Copy, Debug)]
pub enum Simd {
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni(pulp::x86::V4, V4Vnni),
    #[cfg(target_arch = "x86_64")]
    Avx512(pulp::x86::V4),
    #[cfg(target_arch = "x86_64")]
    Avx2(pulp::x86::V3),
    Portable,
}

impl Simd {
    /// The best instruction set this CPU has, up to `cap`.
    pub fn best(cap: SimdCap) -> Simd {
        if cap == SimdCap::Portable {
            return Simd::Portable;
        }
        #[cfg(target_arch = "x86_64")]
        {
            let v4 = pulp::x86::V4::try_new().filter(|_| cap != SimdCap::Avx2);
            if let Some(v4) = v4 {
                match V4Vnni::try_new().filter(|_| cap != SimdCap::Avx512) {
                    Some(vnni) => return Simd::Avx512Vnni(v4, vnni),
                    None => return Simd::Avx512(v4),
                }
            }
            if let Some(s) = pulp::x86::V3::try_new() {
                return Simd::Avx2(s);
            }
        }
        Simd::Portable
    }

    pub fn name(self) -> &'static str {
        match self {
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512Vnni(..) => "avx512-vnni",
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512(_) => "avx512",
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2(_) => "avx2",
            Simd::Portable => "portable",
        }
    }

    /// Runs `f` compiled for this instruction set, so the compiler may
    /// vectorise plain loops in it (`f` and what it calls must inline).
    #[inline(always)]
    pub fn vectorize<R>(self, f: impl FnOnce() -> R) -> R {
        match self {
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512Vnni(_, s) => s.vectorize(f),
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512(s) => s.vectorize(f),
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2(s) => s.vectorize(f),
            Simd::Portable => f(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_is_never_exceeded_and_parses_from_configuration() {
        assert_eq!(Simd::best(SimdCap::Portable).name(), "portable");
        assert!(!Simd::best(SimdCap::Avx2).name().starts_with("avx512"));
        assert_ne!(Simd::best(SimdCap::Avx512).name(), "avx512-vnni");
        for (text, cap) in [
            ("\"\"", SimdCap::Best),
            ("\"best\"", SimdCap::Best),
            ("\"avx2\"", SimdCap::Avx2),
            ("\"portable\"", SimdCap::Portable),
        ] {
            assert_eq!(
                serde_json::from_str::<SimdCap>(text).ok(),
                Some(cap),
                "{text}"
            );
        }
        assert!(serde_json::from_str::<SimdCap>("\"sse9\"").is_err());
    }
}

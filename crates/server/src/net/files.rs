//! The open-files limit: every connection is a descriptor, so the
//! connection cap must sit below this limit or the kernel, not the cap,
//! decides who is refused (and then refuses everyone, health checks too).

/// Descriptors kept for everything that is not a client connection: the
/// listener, the live runtime, store files, logs.
pub const RESERVED: u64 = 256;

/// The soft and hard open-files limits after raising the soft one to the
/// hard one (which needs no privilege).
pub fn raise_open_files_limit() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read or write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// The connection cap to use: the configured one (0: as many as the limit
/// allows), never more than the limit allows.
pub fn connection_cap(configured: u32, soft_limit: u64) -> (u32, bool) {
    let fits = soft_limit
        .saturating_sub(RESERVED)
        .clamp(16, u64::from(u32::MAX)) as u32;
    match configured {
        0 => (fits, false),
        n if n > fits => (fits, true),
        n => (n, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_fits_under_the_limit() {
        assert_eq!(connection_cap(0, 20_000), (19_744, false));
        assert_eq!(connection_cap(50_000, 20_000), (19_744, true));
        assert_eq!(connection_cap(100, 20_000), (100, false));
        assert!(raise_open_files_limit().is_ok());
    }
}

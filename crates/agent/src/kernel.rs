//! Filesystems whose files are the kernel's, not the sandbox's. File requests never read
//! or write them: a "file" there is a view of some process or of the machine, and what
//! it holds is not the sandbox's data.

/// The `statfs` magic numbers of procfs, sysfs, cgroup v1 and v2, debugfs, tracefs,
/// securityfs, bpf, configfs, efivarfs, pstore and devpts.
pub const KERNEL_FILESYSTEMS: [i64; 12] = [
    0x9fa0,
    0x6265_6572,
    0x0027_e0eb,
    0x6367_7270,
    0x6462_6720,
    0x7472_6163,
    0x7363_6673,
    0xcafe_4a11,
    0x6265_6570,
    0xde5e_81e4,
    0x6165_676c,
    0x1cd1,
];

/// Whether the open file `fd` is on one of the [`KERNEL_FILESYSTEMS`].
pub fn is_kernel_file(fd: impl std::os::fd::AsFd) -> std::io::Result<bool> {
    let statfs = rustix::fs::fstatfs(fd)?;
    Ok(KERNEL_FILESYSTEMS.contains(&(statfs.f_type as i64)))
}

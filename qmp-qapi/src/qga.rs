//! The guest agent's commands (qemu-ga), typed.
//!
//! qemu-ga has no introspection: `guest-info` lists command names only
//! (captured in `qmp-qapi/schema/qga-7.2.json`). These types are written by
//! hand and checked against QEMU 7.2's `qga/qapi-schema.json` (names,
//! members, optionality, integer widths, enum values), in the same open style
//! as the generated QMP catalogue: unknown members are ignored, enums keep
//! unknown values, unions keep unknown branches. Types carry their QAPI
//! names, except where a command's name takes it: QAPI's `GuestFileRead`,
//! `GuestFileWrite`, `GuestFileSeek`, `GuestExec`, `GuestExecStatus` and
//! `GuestFsfreezeStatus` (the results) are `GuestFileReadResult`,
//! `GuestFileWriteResult`, `GuestFileSeekResult`, `GuestExecResult`,
//! `GuestExecStatusResult` and `FsfreezeStatus` here.
//!
//! Reference: <https://www.qemu.org/docs/master/interop/qemu-ga-ref.html>.
//!
//! ```
//! use qmp_proto::Command;
//! use qmp_qapi::qga::{GuestFileRead, GuestFileReadResult};
//!
//! assert_eq!(GuestFileRead::NAME, "guest-file-read");
//! let reply = r#"{"count": 5, "buf-b64": "aGVsbG8=", "eof": true}"#;
//! let read: GuestFileReadResult = serde_json::from_str(reply).unwrap();
//! assert!(read.eof);
//! ```

use alloc::string::String;
use alloc::vec::Vec;

use qmp_proto::Empty;
use serde::{Deserialize, Serialize};

use crate::Versions;

macro_rules! qga_command {
    ($(#[$meta:meta])* $name:ident = $wire:literal -> $ret:ty) => {
        impl qmp_proto::Command for $name {
            const NAME: &'static str = $wire;
            type Returns = $ret;
        }
    };
}

/// Declares argument-less commands: a unit struct each.
macro_rules! qga_simple {
    ($( $(#[$meta:meta])* $name:ident = $wire:literal -> $ret:ty; )*) => {
        $(
            $(#[$meta])*
            #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
            pub struct $name;
            qga_command!($name = $wire -> $ret);
        )*
    };
}

qga_simple! {
    /// `guest-ping`: checks the agent answers.
    GuestPing = "guest-ping" -> Empty;
    /// `guest-get-time`: the guest's clock, in nanoseconds since the epoch.
    GuestGetTime = "guest-get-time" -> i64;
    /// `guest-info`: the agent's version and commands.
    GuestInfo = "guest-info" -> GuestAgentInfo;
    /// `guest-fsfreeze-status`: whether the guest's filesystems are frozen.
    GuestFsfreezeStatus = "guest-fsfreeze-status" -> FsfreezeStatus;
    /// `guest-fsfreeze-freeze`: freezes every freezable filesystem; returns how many.
    GuestFsfreezeFreeze = "guest-fsfreeze-freeze" -> i64;
    /// `guest-fsfreeze-thaw`: thaws them; returns how many.
    GuestFsfreezeThaw = "guest-fsfreeze-thaw" -> i64;
    /// `guest-suspend-disk`: suspends to disk. The agent sends no reply.
    GuestSuspendDisk = "guest-suspend-disk" -> Empty;
    /// `guest-suspend-ram`: suspends to RAM. The agent sends no reply.
    GuestSuspendRam = "guest-suspend-ram" -> Empty;
    /// `guest-suspend-hybrid`: saves to disk and suspends to RAM. The agent sends no reply.
    GuestSuspendHybrid = "guest-suspend-hybrid" -> Empty;
    /// `guest-network-get-interfaces`: the guest's network interfaces.
    GuestNetworkGetInterfaces = "guest-network-get-interfaces" -> Vec<GuestNetworkInterface>;
    /// `guest-get-vcpus`: the guest's logical processors.
    GuestGetVcpus = "guest-get-vcpus" -> Vec<GuestLogicalProcessor>;
    /// `guest-get-disks`: the guest's disks and partitions.
    GuestGetDisks = "guest-get-disks" -> Vec<GuestDiskInfo>;
    /// `guest-get-fsinfo`: the guest's mounted filesystems.
    GuestGetFsinfo = "guest-get-fsinfo" -> Vec<GuestFilesystemInfo>;
    /// `guest-get-memory-blocks`: the guest's memory blocks.
    GuestGetMemoryBlocks = "guest-get-memory-blocks" -> Vec<GuestMemoryBlock>;
    /// `guest-get-memory-block-info`: the size of a memory block.
    GuestGetMemoryBlockInfo = "guest-get-memory-block-info" -> GuestMemoryBlockInfo;
    /// `guest-get-host-name`: the guest's host name.
    GuestGetHostName = "guest-get-host-name" -> GuestHostName;
    /// `guest-get-users`: the users logged in.
    GuestGetUsers = "guest-get-users" -> Vec<GuestUser>;
    /// `guest-get-timezone`: the guest's time zone.
    GuestGetTimezone = "guest-get-timezone" -> GuestTimezone;
    /// `guest-get-osinfo`: the guest's operating system.
    GuestGetOsinfo = "guest-get-osinfo" -> GuestOSInfo;
    /// `guest-get-devices`: the guest's devices (Windows guests only).
    GuestGetDevices = "guest-get-devices" -> Vec<GuestDeviceInfo>;
    /// `guest-get-diskstats`: I/O statistics per disk (Linux guests).
    GuestGetDiskstats = "guest-get-diskstats" -> Vec<GuestDiskStatsInfo>;
    /// `guest-get-cpustats`: CPU statistics per CPU (Linux guests).
    GuestGetCpustats = "guest-get-cpustats" -> Vec<GuestCpuStats>;
}

/// `guest-sync`: echoes `id`, to flush stale replies (prefer
/// `guest-sync-delimited`, which the drivers send themselves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestSync {
    /// The number to echo.
    pub id: i64,
}
qga_command!(GuestSync = "guest-sync" -> i64);

/// `guest-sync-delimited`: like `guest-sync`, with a 0xFF byte before the
/// reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestSyncDelimited {
    /// The number to echo.
    pub id: i64,
}
qga_command!(GuestSyncDelimited = "guest-sync-delimited" -> i64);

/// `guest-set-time`: sets the guest's clock (from the hardware clock when
/// `time` is absent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestSetTime {
    /// Nanoseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<i64>,
}
qga_command!(GuestSetTime = "guest-set-time" -> Empty);

/// `guest-shutdown`: powers the guest down, halts or reboots it. The agent
/// sends no reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestShutdown {
    /// `powerdown` (default), `halt` or `reboot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}
qga_command!(GuestShutdown = "guest-shutdown" -> Empty);

/// `guest-file-open`: opens a file in the guest; returns its handle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestFileOpen {
    /// The file's path in the guest.
    pub path: String,
    /// An `fopen` mode (`r` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}
qga_command!(GuestFileOpen = "guest-file-open" -> i64);

/// `guest-file-close`: closes a handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestFileClose {
    /// From `guest-file-open`.
    pub handle: i64,
}
qga_command!(GuestFileClose = "guest-file-close" -> Empty);

/// `guest-file-flush`: flushes a handle's writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestFileFlush {
    /// From `guest-file-open`.
    pub handle: i64,
}
qga_command!(GuestFileFlush = "guest-file-flush" -> Empty);

/// `guest-file-read`: reads up to `count` bytes (at most 48 MB a call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestFileRead {
    /// From `guest-file-open`.
    pub handle: i64,
    /// Bytes to read (4096 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
}
qga_command!(GuestFileRead = "guest-file-read" -> GuestFileReadResult);

/// What `guest-file-read` read (QAPI `GuestFileRead`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestFileReadResult {
    /// Bytes read.
    pub count: i64,
    /// The bytes, base64.
    #[serde(rename = "buf-b64")]
    pub buf_b64: String,
    /// Whether the end of the file was reached.
    pub eof: bool,
}

/// `guest-file-write`: writes base64-encoded bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestFileWrite {
    /// From `guest-file-open`.
    pub handle: i64,
    /// The bytes, base64.
    #[serde(rename = "buf-b64")]
    pub buf_b64: String,
    /// Bytes to write (all by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
}
qga_command!(GuestFileWrite = "guest-file-write" -> GuestFileWriteResult);

/// What `guest-file-write` wrote (QAPI `GuestFileWrite`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestFileWriteResult {
    /// Bytes written.
    pub count: i64,
    /// Whether the end of the file was reached.
    pub eof: bool,
}

qapi_enum! {
    /// Where `guest-file-seek` counts from (QAPI `QGASeek`).
    pub enum QGASeek {
        /// From the start.
        Set = "set",
        /// From the current position.
        Cur = "cur",
        /// From the end.
        End = "end",
    }
}

/// `whence` of `guest-file-seek` (QAPI `GuestFileWhence`): a name or, for
/// old agents, the host's `SEEK_*` number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum GuestFileWhence {
    /// `SEEK_SET` = 0, `SEEK_CUR` = 1, `SEEK_END` = 2.
    Value(i64),
    /// `set`, `cur` or `end`.
    Name(QGASeek),
}

/// `guest-file-seek`: moves a handle's position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestFileSeek {
    /// From `guest-file-open`.
    pub handle: i64,
    /// Bytes from `whence`.
    pub offset: i64,
    /// Where to count from.
    pub whence: GuestFileWhence,
}
qga_command!(GuestFileSeek = "guest-file-seek" -> GuestFileSeekResult);

/// Where `guest-file-seek` went (QAPI `GuestFileSeek`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestFileSeekResult {
    /// The new position.
    pub position: i64,
    /// Whether it is the end of the file.
    pub eof: bool,
}

/// `guest-fsfreeze-freeze-list`: freezes the filesystems mounted at
/// `mountpoints` (all by default); returns how many.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestFsfreezeFreezeList {
    /// The mount points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mountpoints: Option<Vec<String>>,
}
qga_command!(GuestFsfreezeFreezeList = "guest-fsfreeze-freeze-list" -> i64);

qapi_enum! {
    /// The answer of `guest-fsfreeze-status` (QAPI `GuestFsfreezeStatus`, a
    /// name the command takes here).
    pub enum FsfreezeStatus {
        /// Not frozen.
        Thawed = "thawed",
        /// Frozen.
        Frozen = "frozen",
    }
}

/// `guest-fstrim`: discards unused blocks of every mounted filesystem.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestFstrim {
    /// Free ranges shorter than this are left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<i64>,
}
qga_command!(GuestFstrim = "guest-fstrim" -> GuestFilesystemTrimResponse);

/// What `guest-fstrim` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestFilesystemTrimResponse {
    /// One result per filesystem.
    pub paths: Vec<GuestFilesystemTrimResult>,
}

/// One filesystem's `guest-fstrim` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestFilesystemTrimResult {
    /// The mount point.
    pub path: String,
    /// Bytes trimmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trimmed: Option<i64>,
    /// The minimum used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<i64>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The answer of `guest-info` (QAPI `GuestAgentInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestAgentInfo {
    /// The agent's version, such as `7.2.22`.
    pub version: String,
    /// Every command it knows.
    pub supported_commands: Vec<GuestAgentCommandInfo>,
}

/// One command in `guest-info` (QAPI `GuestAgentCommandInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestAgentCommandInfo {
    /// The command name.
    pub name: String,
    /// Whether it may be used (`--block-rpcs` disables commands).
    pub enabled: bool,
    /// Whether it replies.
    #[serde(rename = "success-response")]
    pub success_response: bool,
}

qapi_enum! {
    /// QAPI `GuestIpAddressType`.
    pub enum GuestIpAddressType {
        /// IPv4.
        Ipv4 = "ipv4",
        /// IPv6.
        Ipv6 = "ipv6",
    }
}

/// One address of an interface (QAPI `GuestIpAddress`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestIpAddress {
    /// The address.
    #[serde(rename = "ip-address")]
    pub ip_address: String,
    /// Its family.
    #[serde(rename = "ip-address-type")]
    pub ip_address_type: GuestIpAddressType,
    /// The network prefix length.
    pub prefix: i64,
}

/// Counters of an interface (QAPI `GuestNetworkInterfaceStat`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GuestNetworkInterfaceStat {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Receive errors.
    pub rx_errs: u64,
    /// Received packets dropped.
    pub rx_dropped: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Send errors.
    pub tx_errs: u64,
    /// Sent packets dropped.
    pub tx_dropped: u64,
}

/// One network interface (QAPI `GuestNetworkInterface`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestNetworkInterface {
    /// Its name, such as `eth0`.
    pub name: String,
    /// Its MAC address.
    #[serde(
        rename = "hardware-address",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub hardware_address: Option<String>,
    /// Its addresses.
    #[serde(
        rename = "ip-addresses",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ip_addresses: Option<Vec<GuestIpAddress>>,
    /// Its counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistics: Option<GuestNetworkInterfaceStat>,
}

/// One logical processor (QAPI `GuestLogicalProcessor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestLogicalProcessor {
    /// Its number.
    #[serde(rename = "logical-id")]
    pub logical_id: i64,
    /// Whether it is online.
    pub online: bool,
    /// Whether it can be taken offline (only in answers).
    #[serde(
        rename = "can-offline",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub can_offline: Option<bool>,
}

/// `guest-set-vcpus`: takes processors online or offline; returns how many
/// of them were handled, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestSetVcpus {
    /// The processors and their wanted state.
    pub vcpus: Vec<GuestLogicalProcessor>,
}
qga_command!(GuestSetVcpus = "guest-set-vcpus" -> i64);

qapi_enum! {
    /// QAPI `GuestDiskBusType`.
    pub enum GuestDiskBusType {
        /// IDE.
        Ide = "ide",
        /// Floppy.
        Fdc = "fdc",
        /// SCSI.
        Scsi = "scsi",
        /// virtio.
        Virtio = "virtio",
        /// Xen.
        Xen = "xen",
        /// USB.
        Usb = "usb",
        /// UML.
        Uml = "uml",
        /// SATA.
        Sata = "sata",
        /// SD.
        Sd = "sd",
        /// Unknown.
        Unknown = "unknown",
        /// IEEE 1394.
        Ieee1394 = "ieee1394",
        /// SSA.
        Ssa = "ssa",
        /// Fibre channel.
        Fibre = "fibre",
        /// RAID.
        Raid = "raid",
        /// iSCSI.
        Iscsi = "iscsi",
        /// SAS.
        Sas = "sas",
        /// MMC.
        Mmc = "mmc",
        /// Virtual.
        Virtual = "virtual",
        /// File-backed virtual.
        FileBackedVirtual = "file-backed-virtual",
        /// NVMe.
        Nvme = "nvme",
    }
}

/// A PCI address (QAPI `GuestPCIAddress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestPCIAddress {
    /// Domain.
    pub domain: i64,
    /// Bus.
    pub bus: i64,
    /// Slot.
    pub slot: i64,
    /// Function.
    pub function: i64,
}

/// A CCW address (QAPI `GuestCCWAddress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestCCWAddress {
    /// Channel subsystem.
    pub cssid: i64,
    /// Subchannel set.
    pub ssid: i64,
    /// Subchannel.
    pub subchno: i64,
    /// Device number.
    pub devno: i64,
}

/// Where a disk is (QAPI `GuestDiskAddress`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestDiskAddress {
    /// Its controller's PCI address.
    #[serde(rename = "pci-controller")]
    pub pci_controller: GuestPCIAddress,
    /// The bus type.
    #[serde(rename = "bus-type")]
    pub bus_type: GuestDiskBusType,
    /// Bus number.
    pub bus: i64,
    /// Target number.
    pub target: i64,
    /// Unit number.
    pub unit: i64,
    /// Serial number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Device node, such as `/dev/sda`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
    /// Its CCW address (s390x).
    #[serde(
        rename = "ccw-address",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ccw_address: Option<GuestCCWAddress>,
}

/// A disk or partition (QAPI `GuestDiskInfo`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuestDiskInfo {
    /// Its device node.
    pub name: String,
    /// Whether it is a partition.
    pub partition: bool,
    /// The devices it is built on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependencies: Option<Vec<String>>,
    /// Where it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<GuestDiskAddress>,
    /// Its alias (a device-mapper name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Its SMART data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smart: Option<GuestDiskSmart>,
}

qapi_union! {
    /// A disk's SMART data (QAPI `GuestDiskSmart`), by its bus type; other
    /// bus types land in `Other`.
    pub enum GuestDiskSmart: "type" {
        /// `type: nvme`.
        Nvme = "nvme" => GuestNVMeSmart,
    } {}
}

/// An NVMe disk's SMART health log (QAPI `GuestNVMeSmart`). The 128-bit
/// counters come as `-lo` and `-hi` halves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GuestNVMeSmart {
    /// Critical warning bits.
    pub critical_warning: i64,
    /// Composite temperature, in kelvins.
    pub temperature: i64,
    /// Spare capacity left, in percent.
    pub available_spare: i64,
    /// The spare capacity below which it warns, in percent.
    pub available_spare_threshold: i64,
    /// Life used, as the vendor estimates it, in percent.
    pub percentage_used: i64,
    /// Data units (1000 blocks of 512 bytes) read: low 64 bits.
    pub data_units_read_lo: u64,
    /// Data units read: high 64 bits.
    pub data_units_read_hi: u64,
    /// Data units written: low 64 bits.
    pub data_units_written_lo: u64,
    /// Data units written: high 64 bits.
    pub data_units_written_hi: u64,
    /// Read commands completed: low 64 bits.
    pub host_read_commands_lo: u64,
    /// Read commands completed: high 64 bits.
    pub host_read_commands_hi: u64,
    /// Write commands completed: low 64 bits.
    pub host_write_commands_lo: u64,
    /// Write commands completed: high 64 bits.
    pub host_write_commands_hi: u64,
    /// Minutes busy with I/O: low 64 bits.
    pub controller_busy_time_lo: u64,
    /// Minutes busy with I/O: high 64 bits.
    pub controller_busy_time_hi: u64,
    /// Power cycles: low 64 bits.
    pub power_cycles_lo: u64,
    /// Power cycles: high 64 bits.
    pub power_cycles_hi: u64,
    /// Hours powered on: low 64 bits.
    pub power_on_hours_lo: u64,
    /// Hours powered on: high 64 bits.
    pub power_on_hours_hi: u64,
    /// Unsafe shutdowns: low 64 bits.
    pub unsafe_shutdowns_lo: u64,
    /// Unsafe shutdowns: high 64 bits.
    pub unsafe_shutdowns_hi: u64,
    /// Unrecovered data integrity errors: low 64 bits.
    pub media_errors_lo: u64,
    /// Unrecovered data integrity errors: high 64 bits.
    pub media_errors_hi: u64,
    /// Error log entries: low 64 bits.
    pub number_of_error_log_entries_lo: u64,
    /// Error log entries: high 64 bits.
    pub number_of_error_log_entries_hi: u64,
}

/// A mounted filesystem (QAPI `GuestFilesystemInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestFilesystemInfo {
    /// The device.
    pub name: String,
    /// Where it is mounted.
    pub mountpoint: String,
    /// Its type, such as `ext4`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Bytes used.
    #[serde(
        rename = "used-bytes",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub used_bytes: Option<u64>,
    /// Bytes in all.
    #[serde(
        rename = "total-bytes",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub total_bytes: Option<u64>,
    /// The disks it is on.
    pub disk: Vec<GuestDiskAddress>,
}

/// `guest-set-user-password`: sets a guest user's password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestSetUserPassword {
    /// The user.
    pub username: String,
    /// The password, base64.
    pub password: String,
    /// Whether `password` is already encrypted.
    pub crypted: bool,
}
qga_command!(GuestSetUserPassword = "guest-set-user-password" -> Empty);

/// A memory block (QAPI `GuestMemoryBlock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestMemoryBlock {
    /// Its index.
    #[serde(rename = "phys-index")]
    pub phys_index: u64,
    /// Whether it is online.
    pub online: bool,
    /// Whether it can be taken offline (only in answers).
    #[serde(
        rename = "can-offline",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub can_offline: Option<bool>,
}

/// `guest-set-memory-blocks`: takes memory blocks online or offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestSetMemoryBlocks {
    /// The blocks and their wanted state.
    #[serde(rename = "mem-blks")]
    pub mem_blks: Vec<GuestMemoryBlock>,
}
qga_command!(GuestSetMemoryBlocks = "guest-set-memory-blocks" -> Vec<GuestMemoryBlockResponse>);

qapi_enum! {
    /// QAPI `GuestMemoryBlockResponseType`.
    pub enum GuestMemoryBlockResponseType {
        /// Done.
        Success = "success",
        /// No such block.
        NotFound = "not-found",
        /// Not supported for this block.
        OperationNotSupported = "operation-not-supported",
        /// Failed; see `error-code`.
        OperationFailed = "operation-failed",
    }
}

/// One block's `guest-set-memory-blocks` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestMemoryBlockResponse {
    /// The block.
    #[serde(rename = "phys-index")]
    pub phys_index: u64,
    /// What happened.
    pub response: GuestMemoryBlockResponseType,
    /// The errno, on failure.
    #[serde(
        rename = "error-code",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub error_code: Option<i64>,
}

/// The answer of `guest-get-memory-block-info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestMemoryBlockInfo {
    /// Bytes per block.
    pub size: u64,
}

/// `guest-exec`: starts a program in the guest; poll it with
/// `guest-exec-status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestExec {
    /// The program.
    pub path: String,
    /// Its arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg: Option<Vec<String>>,
    /// Its environment, `NAME=value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// Its standard input, base64.
    #[serde(
        rename = "input-data",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub input_data: Option<String>,
    /// Whether to capture its output (QEMU 7.2's agent takes the flag only).
    #[serde(
        rename = "capture-output",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub capture_output: Option<GuestExecCaptureOutput>,
}
qga_command!(GuestExec = "guest-exec" -> GuestExecResult);

/// Whether `guest-exec` captures the program's output: a flag (every agent)
/// or, for agents newer than 7.2, a mode (QAPI `GuestExecCaptureOutput`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum GuestExecCaptureOutput {
    /// Capture both streams, separately (`true`), or neither.
    Flag(bool),
    /// A capture mode.
    Mode(GuestExecCaptureOutputMode),
}

qapi_enum! {
    /// How `guest-exec` captures output (QAPI `GuestExecCaptureOutputMode`;
    /// agents newer than 7.2).
    pub enum GuestExecCaptureOutputMode {
        /// Capture nothing.
        None = "none",
        /// Standard output only.
        Stdout = "stdout",
        /// Standard error only.
        Stderr = "stderr",
        /// Both, each in its own field.
        Separated = "separated",
        /// Both, merged into `out-data`.
        Merged = "merged",
    }
}

/// The answer of `guest-exec` (QAPI `GuestExec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestExecResult {
    /// The process id, for `guest-exec-status`.
    pub pid: i64,
}

/// `guest-exec-status`: a started program's state and output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestExecStatus {
    /// From `guest-exec`.
    pub pid: i64,
}
qga_command!(GuestExecStatus = "guest-exec-status" -> GuestExecStatusResult);

/// The answer of `guest-exec-status` (QAPI `GuestExecStatus`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GuestExecStatusResult {
    /// Whether it has ended; the rest is only there when it has.
    pub exited: bool,
    /// Its exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exitcode: Option<i64>,
    /// The signal that ended it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i64>,
    /// Its standard output, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_data: Option<String>,
    /// Its standard error, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub err_data: Option<String>,
    /// Whether `out-data` was cut short.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_truncated: Option<bool>,
    /// Whether `err-data` was cut short.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub err_truncated: Option<bool>,
}

/// The answer of `guest-get-host-name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestHostName {
    /// The host name.
    #[serde(rename = "host-name")]
    pub host_name: String,
}

/// A logged-in user (QAPI `GuestUser`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuestUser {
    /// The user name.
    pub user: String,
    /// The login domain (Windows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Seconds since the epoch, fractional.
    #[serde(rename = "login-time")]
    pub login_time: f64,
}

/// The answer of `guest-get-timezone` (QAPI `GuestTimezone`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestTimezone {
    /// The zone's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Seconds east of UTC.
    pub offset: i64,
}

/// The answer of `guest-get-osinfo` (QAPI `GuestOSInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GuestOSInfo {
    /// `uname -r`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_release: Option<String>,
    /// `uname -v`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_version: Option<String>,
    /// `uname -m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// os-release `ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// os-release `NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// os-release `PRETTY_NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretty_name: Option<String>,
    /// os-release `VERSION`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// os-release `VERSION_ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// os-release `VARIANT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// os-release `VARIANT_ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant_id: Option<String>,
}

/// A device (QAPI `GuestDeviceInfo`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuestDeviceInfo {
    /// Its driver.
    #[serde(rename = "driver-name")]
    pub driver_name: String,
    /// The driver's date, nanoseconds since the epoch.
    #[serde(
        rename = "driver-date",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub driver_date: Option<i64>,
    /// The driver's version.
    #[serde(
        rename = "driver-version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub driver_version: Option<String>,
    /// Its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<GuestDeviceId>,
}

qapi_union! {
    /// A device's id (QAPI `GuestDeviceId`), by its bus; other kinds land
    /// in `Other`.
    pub enum GuestDeviceId: "type" {
        /// `type: pci`.
        Pci = "pci" => GuestDeviceIdPCI,
    } {}
}

/// A PCI device's id (QAPI `GuestDeviceIdPCI`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GuestDeviceIdPCI {
    /// The vendor id.
    pub vendor_id: u16,
    /// The device id.
    pub device_id: u16,
}

/// `guest-ssh-get-authorized-keys`: a guest user's SSH authorized keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestSshGetAuthorizedKeys {
    /// The user.
    pub username: String,
}
qga_command!(GuestSshGetAuthorizedKeys = "guest-ssh-get-authorized-keys" -> GuestAuthorizedKeys);

/// The answer of `guest-ssh-get-authorized-keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestAuthorizedKeys {
    /// The keys, one per line of `authorized_keys`.
    pub keys: Vec<String>,
}

/// `guest-ssh-add-authorized-keys`: adds SSH keys for a guest user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestSshAddAuthorizedKeys {
    /// The user.
    pub username: String,
    /// The keys.
    pub keys: Vec<String>,
    /// Replace the existing keys instead of adding to them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<bool>,
}
qga_command!(GuestSshAddAuthorizedKeys = "guest-ssh-add-authorized-keys" -> Empty);

/// `guest-ssh-remove-authorized-keys`: removes SSH keys of a guest user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestSshRemoveAuthorizedKeys {
    /// The user.
    pub username: String,
    /// The keys.
    pub keys: Vec<String>,
}
qga_command!(GuestSshRemoveAuthorizedKeys = "guest-ssh-remove-authorized-keys" -> Empty);

/// A disk's I/O counters (QAPI `GuestDiskStats`); each may be missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct GuestDiskStats {
    /// Sectors read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_sectors: Option<u64>,
    /// Reads completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_ios: Option<u64>,
    /// Reads merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_merges: Option<u64>,
    /// Sectors written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_sectors: Option<u64>,
    /// Writes completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_ios: Option<u64>,
    /// Writes merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_merges: Option<u64>,
    /// Sectors discarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discard_sectors: Option<u64>,
    /// Discards completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discard_ios: Option<u64>,
    /// Discards merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discard_merges: Option<u64>,
    /// Flushes completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_ios: Option<u64>,
    /// Milliseconds spent reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_ticks: Option<u64>,
    /// Milliseconds spent writing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_ticks: Option<u64>,
    /// Milliseconds spent discarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discard_ticks: Option<u64>,
    /// Milliseconds spent flushing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_ticks: Option<u64>,
    /// I/Os in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ios_pgr: Option<u64>,
    /// Milliseconds spent doing I/O.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_ticks: Option<u64>,
    /// Weighted milliseconds spent doing I/O.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_ticks: Option<u64>,
}

/// One disk's `guest-get-diskstats` entry (QAPI `GuestDiskStatsInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestDiskStatsInfo {
    /// The disk.
    pub name: String,
    /// Its major number.
    pub major: u64,
    /// Its minor number.
    pub minor: u64,
    /// Its counters.
    pub stats: GuestDiskStats,
}

/// A Linux CPU's times, in jiffies (QAPI `GuestLinuxCpuStats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestLinuxCpuStats {
    /// The CPU number.
    pub cpu: i64,
    /// Time in user mode, in clock ticks.
    pub user: u64,
    /// Time in user mode at low priority.
    pub nice: u64,
    /// Time in system mode.
    pub system: u64,
    /// Time idle.
    pub idle: u64,
    /// Time waiting for I/O.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iowait: Option<u64>,
    /// Time serving interrupts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub irq: Option<u64>,
    /// Time serving soft interrupts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub softirq: Option<u64>,
    /// Time stolen by the hypervisor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steal: Option<u64>,
    /// Time running a guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<u64>,
    /// Time running a niced guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guestnice: Option<u64>,
}

qapi_union! {
    /// One CPU's `guest-get-cpustats` entry (QAPI `GuestCpuStats`, a union
    /// on `type`); other guest kinds land in `Other`.
    pub enum GuestCpuStats: "type" {
        /// `type: linux`.
        Linux = "linux" => GuestLinuxCpuStats,
    } {}
}

/// Every command, with the agent versions whose `guest-info` lists it (the
/// captured `qga-7.2.json`; only 7.2's agent is captured, so the 7.2 bit).
pub const COMMANDS: &[(&str, Versions)] = &[
    ("guest-exec", Versions::QEMU_7_2),
    ("guest-exec-status", Versions::QEMU_7_2),
    ("guest-file-close", Versions::QEMU_7_2),
    ("guest-file-flush", Versions::QEMU_7_2),
    ("guest-file-open", Versions::QEMU_7_2),
    ("guest-file-read", Versions::QEMU_7_2),
    ("guest-file-seek", Versions::QEMU_7_2),
    ("guest-file-write", Versions::QEMU_7_2),
    ("guest-fsfreeze-freeze", Versions::QEMU_7_2),
    ("guest-fsfreeze-freeze-list", Versions::QEMU_7_2),
    ("guest-fsfreeze-status", Versions::QEMU_7_2),
    ("guest-fsfreeze-thaw", Versions::QEMU_7_2),
    ("guest-fstrim", Versions::QEMU_7_2),
    ("guest-get-cpustats", Versions::QEMU_7_2),
    ("guest-get-devices", Versions::QEMU_7_2),
    ("guest-get-disks", Versions::QEMU_7_2),
    ("guest-get-diskstats", Versions::QEMU_7_2),
    ("guest-get-fsinfo", Versions::QEMU_7_2),
    ("guest-get-host-name", Versions::QEMU_7_2),
    ("guest-get-memory-block-info", Versions::QEMU_7_2),
    ("guest-get-memory-blocks", Versions::QEMU_7_2),
    ("guest-get-osinfo", Versions::QEMU_7_2),
    ("guest-get-time", Versions::QEMU_7_2),
    ("guest-get-timezone", Versions::QEMU_7_2),
    ("guest-get-users", Versions::QEMU_7_2),
    ("guest-get-vcpus", Versions::QEMU_7_2),
    ("guest-info", Versions::QEMU_7_2),
    ("guest-network-get-interfaces", Versions::QEMU_7_2),
    ("guest-ping", Versions::QEMU_7_2),
    ("guest-set-memory-blocks", Versions::QEMU_7_2),
    ("guest-set-time", Versions::QEMU_7_2),
    ("guest-set-user-password", Versions::QEMU_7_2),
    ("guest-set-vcpus", Versions::QEMU_7_2),
    ("guest-shutdown", Versions::QEMU_7_2),
    ("guest-ssh-add-authorized-keys", Versions::QEMU_7_2),
    ("guest-ssh-get-authorized-keys", Versions::QEMU_7_2),
    ("guest-ssh-remove-authorized-keys", Versions::QEMU_7_2),
    ("guest-suspend-disk", Versions::QEMU_7_2),
    ("guest-suspend-hybrid", Versions::QEMU_7_2),
    ("guest-suspend-ram", Versions::QEMU_7_2),
    ("guest-sync", Versions::QEMU_7_2),
    ("guest-sync-delimited", Versions::QEMU_7_2),
];

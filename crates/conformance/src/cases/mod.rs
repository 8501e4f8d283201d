//! The case table. Every case is registered for every provider; [`Need`] decides whether
//! it runs, and says why not. Each capability-gated case has a negative twin that runs
//! when the capability is absent and checks the `Unsupported` answer.

mod exec;
mod exec_detached;
mod exec_env;
mod exec_pty;
mod exec_signal;
mod exec_stdin;
mod files;
mod lifecycle;
mod needs;
mod network;
mod optional;
mod paths;
mod specs;
mod usage;
mod watch;

use crate::case::{Case, Need};
use needs::*;

macro_rules! case {
    ($module:ident :: $name:ident, $needs:expr, $summary:expr $(,)?) => {
        Case {
            name: stringify!($name),
            summary: $summary,
            needs: $needs,
            run: |cx| Box::pin($module::$name(cx)),
        }
    };
}

/// The table, in report order.
pub(crate) static CASES: &[Case] = &[
    // Lifecycle.
    case!(
        lifecycle::create_returns_running_sandbox,
        Need::NOTHING,
        "create returns a running sandbox with an absolute workdir, ready for commands"
    ),
    case!(
        lifecycle::info_describes_the_sandbox,
        Need::NOTHING,
        "info returns the same id, state running, the workdir and a plausible creation time"
    ),
    case!(
        lifecycle::ownership_tags_on_every_sandbox,
        TAGS,
        "every sandbox carries sandkit.managed-by, owner, run-id, created-at and expires-at = created-at + lifetime"
    ),
    case!(
        lifecycle::tags_unsupported,
        NO_TAGS,
        "a spec with tags is Unsupported when the provider has no tags"
    ),
    case!(
        lifecycle::list_includes_running_sandbox,
        Need::NOTHING,
        "list() includes a running sandbox"
    ),
    case!(
        lifecycle::list_by_tags_finds_only_matching,
        LIST_BY_TAGS,
        "listing by tags returns exactly the sandboxes carrying all of them"
    ),
    case!(
        lifecycle::list_by_tags_unsupported,
        NO_LIST_BY_TAGS,
        "listing by tags is Unsupported without list_by_tags"
    ),
    case!(
        lifecycle::list_omits_terminated,
        Need::NOTHING,
        "list() no longer shows a terminated sandbox"
    ),
    case!(
        lifecycle::terminate_is_idempotent,
        Need::NOTHING,
        "terminating twice is Ok both times"
    ),
    case!(
        lifecycle::terminate_unknown_id_is_ok,
        Need::NOTHING,
        "terminating an id that never existed is Ok"
    ),
    case!(
        lifecycle::info_unknown_id_not_found,
        Need::NOTHING,
        "info of an unknown id is NotFound"
    ),
    case!(
        lifecycle::info_after_terminate_not_found,
        Need::NOTHING,
        "info of a terminated sandbox is NotFound"
    ),
    case!(
        lifecycle::exec_after_terminate_not_found,
        Need::NOTHING,
        "exec in a terminated or unknown sandbox is NotFound"
    ),
    case!(
        files::files_after_terminate_not_found,
        FILES,
        "read_file and write_file in a terminated sandbox are NotFound"
    ),
    case!(
        lifecycle::find_by_name,
        LOOKUP_BY_NAME,
        "find_by_name returns the named sandbox, and NotFound after terminate or for unknown names"
    ),
    case!(
        lifecycle::find_by_name_unsupported,
        NO_LOOKUP_BY_NAME,
        "find_by_name and named sandboxes are Unsupported without lookup_by_name"
    ),
    case!(
        lifecycle::reap_dry_run_then_reap,
        LIST_BY_TAGS,
        "reap lists the run's sandbox on a dry run without touching it, then terminates it"
    ),
    case!(
        lifecycle::reap_unsupported,
        NO_LIST_BY_TAGS,
        "reap is Unsupported without listing by tags"
    ),
    case!(
        lifecycle::lifetime_ends_sandbox,
        Need::NOTHING,
        "a sandbox ends on its own when its lifetime runs out"
    ),
    case!(
        lifecycle::lifetime_over_max_is_invalid,
        MAX_LIFETIME,
        "a lifetime over the provider's maximum is InvalidSpec naming lifetime_secs"
    ),
    case!(
        lifecycle::long_lifetime_accepted_without_max,
        NO_MAX_LIFETIME,
        "without a maximum, a 30-day lifetime is accepted and expires-at says so"
    ),
    case!(
        lifecycle::idle_timeout_ends_idle_sandbox,
        IDLE_TIMEOUT,
        "a sandbox with an idle timeout ends when left idle"
    ),
    case!(
        lifecycle::lease_holds_while_its_creator_lives,
        CLIENT_LEASE,
        "a sandbox with a 5 s lease still runs 8 s later while its creator lives"
    ),
    case!(
        lifecycle::lease_unsupported,
        NO_CLIENT_LEASE,
        "a lease is Unsupported without client_lease"
    ),
    case!(
        lifecycle::idle_timeout_unsupported,
        NO_IDLE_TIMEOUT,
        "an idle timeout is Unsupported without idle_timeout"
    ),
    // Specs.
    case!(
        specs::invalid_spec_cpu_zero,
        Need::NOTHING,
        "cpu 0 is InvalidSpec naming cpu, and nothing is created"
    ),
    case!(
        specs::invalid_spec_memory_zero,
        Need::NOTHING,
        "memory 0 is InvalidSpec naming memory_mib"
    ),
    case!(
        specs::invalid_spec_relative_workdir,
        Need::NOTHING,
        "a relative workdir is InvalidSpec naming workdir"
    ),
    case!(
        specs::invalid_spec_env_name_with_equals,
        Need::NOTHING,
        "an env name containing `=` is InvalidSpec naming it"
    ),
    case!(
        specs::invalid_spec_reserved_tag_key,
        Need::NOTHING,
        "a tag key under `sandkit.` is InvalidSpec naming it"
    ),
    case!(
        specs::invalid_spec_zero_lifetime,
        Need::NOTHING,
        "a zero lifetime is InvalidSpec naming lifetime_secs"
    ),
    case!(
        specs::unknown_provider_option_rejected,
        Need::NOTHING,
        "an unknown provider option is rejected by name, never ignored"
    ),
    case!(
        specs::region_not_offered_rejected,
        Need::NOTHING,
        "a region the provider does not offer is Unsupported"
    ),
    case!(
        specs::region_honoured,
        REGIONS,
        "a sandbox placed in an offered region reports it"
    ),
    case!(
        specs::gpu_not_offered_rejected,
        SOME_GPU_NOT_OFFERED,
        "a GPU kind the provider does not offer is Unsupported"
    ),
    case!(
        specs::cpu_limit_applied,
        CPU_LIMIT,
        "a cpu limit is applied and reported"
    ),
    case!(
        specs::cpu_over_max_is_invalid,
        CPU_MAX,
        "cpu over the provider's maximum is InvalidSpec naming cpu"
    ),
    case!(
        specs::cpu_limit_unsupported,
        NO_CPU_LIMIT,
        "a cpu limit is Unsupported without cpu_limit"
    ),
    case!(
        specs::memory_limit_applied,
        MEMORY_LIMIT,
        "a memory limit is applied and reported"
    ),
    case!(
        specs::memory_over_max_is_invalid,
        MEMORY_MAX,
        "memory over the provider's maximum is InvalidSpec naming memory_mib"
    ),
    case!(
        specs::memory_limit_unsupported,
        NO_MEMORY_LIMIT,
        "a memory limit is Unsupported without memory_limit"
    ),
    case!(
        specs::workdir_from_spec,
        Need::NOTHING,
        "the spec's workdir is reported and commands start there"
    ),
    case!(
        specs::image_registry_unsupported,
        NO_REGISTRY_IMAGES,
        "a registry image is Unsupported without image_registry"
    ),
    case!(
        specs::image_dockerfile_unsupported,
        NO_DOCKERFILE_IMAGES,
        "a Dockerfile image is Unsupported without image_dockerfile"
    ),
    // Exec.
    case!(
        exec::exec_stdout,
        Need::NOTHING,
        "stdout arrives exactly, stderr stays empty, exit 0"
    ),
    case!(
        exec::exec_true_is_silent,
        Need::NOTHING,
        "`true` produces no output and exit 0"
    ),
    case!(
        exec::exec_stderr_separate,
        SEPARATE_STDERR,
        "stdout and stderr arrive on separate streams"
    ),
    case!(
        exec::exec_stderr_merged_when_not_separate,
        MERGED_STDERR,
        "without separate stderr, standard error arrives on stdout"
    ),
    case!(exec::exec_exit_0, Need::NOTHING, "exit 0 is reported as 0"),
    case!(
        exec::exec_exit_1,
        Need::NOTHING,
        "exit 1 is a normal result, reported as 1"
    ),
    case!(
        exec::exec_exit_42,
        Need::NOTHING,
        "exit 42 is reported as 42"
    ),
    case!(
        exec::exec_sigterm_self_is_143,
        Need::NOTHING,
        "a process that kills itself with SIGTERM exits 143 and is not a timeout"
    ),
    case!(
        exec::exec_utf8_output,
        Need::NOTHING,
        "UTF-8 output arrives byte for byte"
    ),
    case!(
        exec::exec_invalid_utf8_output,
        Need::NOTHING,
        "invalid UTF-8 survives on both streams"
    ),
    case!(
        exec::exec_large_output_streamed,
        Need::NOTHING,
        "64 MiB of stdout streams through intact (counted, never held)"
    ),
    case!(
        exec::exec_output_in_order,
        Need::NOTHING,
        "100000 lines arrive complete and in order"
    ),
    case!(
        exec::exec_both_streams_large,
        SEPARATE_STDERR,
        "4 MiB on each stream at once does not deadlock"
    ),
    case!(
        exec::exec_output_limit_truncates,
        Need::NOTHING,
        "output_limit_bytes keeps the first bytes and marks the output truncated"
    ),
    case!(
        exec_stdin::exec_without_stdin_reads_eof,
        Need::NOTHING,
        "without stdin, a command reading stdin sees EOF at once"
    ),
    case!(
        exec_stdin::exec_stdin_text,
        STDIN,
        "text on stdin reaches the command unchanged"
    ),
    case!(
        exec_stdin::exec_stdin_binary,
        STDIN,
        "every byte value on stdin reaches the command unchanged"
    ),
    case!(
        exec_stdin::exec_stdin_16mib,
        STDIN,
        "16 MiB on stdin reaches the command unchanged"
    ),
    case!(
        exec_stdin::exec_stdin_streams_before_eof,
        STDIN,
        "stdin is streamed: the command sees a line before stdin closes"
    ),
    case!(
        exec_stdin::exec_stdin_closed_gives_eof,
        STDIN,
        "closing stdin gives the command EOF"
    ),
    case!(
        exec_stdin::exec_stdin_unsupported,
        NO_STDIN,
        "stdin is Unsupported without exec_stdin"
    ),
    case!(
        exec_env::exec_spec_env,
        Need::NOTHING,
        "the spec's env reaches commands"
    ),
    case!(
        exec_env::exec_request_env,
        Need::NOTHING,
        "a request's env adds to and overrides the spec's, values unchanged"
    ),
    case!(
        exec_env::exec_secret_env,
        SECRETS,
        "a secret reaches commands as env and never appears in info"
    ),
    case!(
        exec_env::secrets_unsupported,
        NO_SECRETS,
        "a spec with secrets is Unsupported without secrets"
    ),
    case!(
        exec_env::exec_cwd_default_is_workdir,
        Need::NOTHING,
        "commands start in info.workdir"
    ),
    case!(
        exec_env::exec_cwd_relative,
        Need::NOTHING,
        "a relative cwd resolves against the workdir"
    ),
    case!(
        exec_env::exec_cwd_absolute,
        Need::NOTHING,
        "an absolute cwd is used as given"
    ),
    case!(
        exec_env::exec_cwd_missing_is_error,
        Need::NOTHING,
        "a missing cwd is an error, not a run elsewhere"
    ),
    case!(
        paths::paths_exec_cwd_tmp_and_system_dir,
        CONTAINER_PATHS,
        "a command with cwd /tmp, or a system directory such as /bin, prints that directory with pwd"
    ),
    case!(
        exec::exec_timeout_returns_partial_output,
        TIMEOUTS,
        "a timeout is CommandTimeout carrying the output so far"
    ),
    case!(
        exec::exec_timeout_kills_process_tree,
        TIMEOUTS,
        "a timeout kills the shell, its child and its grandchild; the sandbox stays usable"
    ),
    case!(
        exec::exec_timeout_unsupported,
        NO_TIMEOUTS,
        "an exec timeout is Unsupported without exec_timeout"
    ),
    case!(
        exec::exec_kill_stops_command,
        Need::NOTHING,
        "kill ends the whole process tree, wait returns a failure status, a second kill is Ok"
    ),
    case!(
        exec::exec_argv_shell_specials,
        Need::NOTHING,
        "arguments with $, *, ;, quotes, newlines, spaces and backticks pass unchanged"
    ),
    case!(
        exec::exec_argv_60kib,
        Need::NOTHING,
        "a 60 KiB argument passes unchanged"
    ),
    case!(
        exec::exec_non_executable_is_exec_failed,
        Need::NOTHING,
        "executing a file without execute permission is ExecFailed"
    ),
    case!(
        exec::exec_missing_binary_is_program_not_found,
        Need::NOTHING,
        "a missing program (on PATH or by path) is ProgramNotFound naming it, promptly"
    ),
    case!(
        exec::exec_empty_argv_is_invalid,
        Need::NOTHING,
        "an empty argv is InvalidSpec naming argv"
    ),
    case!(
        exec::exec_concurrent_in_one_sandbox,
        Need::NOTHING,
        "six commands run at once in one sandbox, each with its own output"
    ),
    case!(exec::exec_pty, PTY, "a command on a pty sees a terminal"),
    case!(
        exec_pty::exec_pty_size_and_resize,
        PTY,
        "a terminal has the size asked for, and a resize's after it"
    ),
    case!(
        exec_pty::exec_pty_ctrl_c_interrupts,
        PTY,
        "Ctrl-C typed on a terminal interrupts the command"
    ),
    case!(
        exec_pty::exec_resize_without_pty_is_invalid,
        Need::NOTHING,
        "a resize without a pty, or a pty size without pty, is InvalidSpec"
    ),
    case!(
        exec::exec_pty_unsupported,
        NO_PTY,
        "a pty is Unsupported without exec_pty"
    ),
    case!(
        exec::exec_run_as_user,
        RUN_AS_USER,
        "a command runs as the uid asked for"
    ),
    case!(
        exec::exec_as_root_has_root_powers,
        RUN_AS_USER,
        "a command run as root may give a file away (chown)"
    ),
    case!(
        exec::exec_unknown_user_fails_naming_it,
        RUN_AS_USER,
        "a user the sandbox does not have is InvalidSpec naming `user`, or a failed command naming the user"
    ),
    case!(
        exec::exec_run_as_user_unsupported,
        NO_RUN_AS_USER,
        "another user is Unsupported without exec_run_as_user"
    ),
    case!(
        exec_signal::exec_signal_reaches_the_command,
        SIGNAL,
        "SIGTERM reaches a command, whose handler runs"
    ),
    case!(
        exec_signal::exec_signal_unhandled_ends_with_128_plus_n,
        SIGNAL,
        "a command ended by SIGINT reports 130"
    ),
    case!(
        exec_signal::exec_signal_after_the_end_and_out_of_range,
        SIGNAL,
        "a signal after the end is Ok; 0, -1, 32 and 65 are InvalidSpec naming signal"
    ),
    case!(
        exec_signal::exec_signal_unsupported,
        NO_SIGNAL,
        "a signal is Unsupported without exec_signal"
    ),
    case!(
        exec_detached::exec_detached_reattaches_with_replay,
        DETACHED,
        "a detached command is listed, outlives its attach, and re-attaches from an offset to its end"
    ),
    case!(
        exec_detached::exec_detached_killed_by_id,
        DETACHED,
        "a detached command is killed through an attach by its id"
    ),
    case!(
        exec_detached::exec_detached_unsupported,
        NO_DETACHED,
        "detached commands are Unsupported without exec_detached"
    ),
    case!(
        usage::resource_usage_measures_cpu_and_memory,
        USAGE,
        "resource usage counts the cpu time of ended commands and a live process's memory"
    ),
    case!(
        usage::resource_usage_unsupported,
        NO_USAGE,
        "resource usage is Unsupported without resource_usage"
    ),
    case!(
        watch::watch_reports_changes,
        WATCH,
        "a watch reports creations, writes, renames and deletions, subdirectories only when recursive"
    ),
    case!(
        watch::watch_of_a_file_or_missing_path_is_an_error,
        WATCH,
        "watching a file or a missing path is FileOperation NotADirectory or NotFound"
    ),
    case!(
        watch::watch_unsupported,
        NO_WATCH,
        "watching files is Unsupported without file_watch"
    ),
    // Files.
    case!(
        files::file_text_round_trip,
        FILES,
        "a text file reads back as written, and stat agrees"
    ),
    case!(
        files::file_binary_round_trip,
        FILES,
        "a binary file with every byte value reads back as written"
    ),
    case!(
        files::file_zero_length,
        FILES,
        "a zero-length file reads back empty"
    ),
    case!(
        files::file_64mib,
        FILES,
        "a 64 MiB file reads back as written"
    ),
    case!(
        files::file_nested_directories,
        FILES,
        "writing a nested path creates its directories"
    ),
    case!(
        files::file_read_missing_is_not_found,
        FILES,
        "reading a missing file is a NotFound file error"
    ),
    case!(
        files::file_read_directory_is_a_directory,
        FILES,
        "reading a directory is an IsADirectory file error"
    ),
    case!(
        files::file_permission_denied,
        FILES,
        "reading a mode-000 file is a PermissionDenied file error (when permissions apply)"
    ),
    case!(
        files::file_overwrite_truncates,
        FILES,
        "overwriting a file replaces all of it"
    ),
    case!(
        files::file_list_dir,
        FILES,
        "list_dir returns entries sorted by name with kinds and sizes; errors by kind"
    ),
    case!(
        files::file_stat,
        FILES,
        "stat reports kind, size and mode, and does not follow a final symlink"
    ),
    case!(
        files::file_make_dir,
        FILES,
        "make_dir creates parents, accepts an existing directory, refuses a file"
    ),
    case!(
        files::file_remove,
        FILES,
        "remove deletes files, refuses a non-empty directory unless recursive"
    ),
    case!(
        files::file_shared_with_exec,
        FILES_AND_WORKDIR,
        "files written by the API are seen by commands and the reverse, by relative and absolute path"
    ),
    case!(
        paths::paths_tmp_shared_with_exec,
        CONTAINER_PATHS_FILES,
        "a file under /tmp written by the API reads back by API and by `cat`; one a command writes there reads back by API"
    ),
    case!(
        paths::paths_read_only_base_refuses_writes,
        READ_ONLY_BASE,
        "write_file under /usr or /bin is a PermissionDenied file error and leaves nothing"
    ),
    case!(
        files::files_unsupported,
        NO_FILES,
        "file operations are Unsupported without files"
    ),
    case!(
        files::initial_files_from_spec,
        FILES,
        "the spec's initial files are in place when the sandbox starts"
    ),
    case!(
        files::initial_files_unsupported,
        NO_FILES,
        "initial files are Unsupported without files"
    ),
    case!(
        files::batch_archive_round_trip,
        BATCH,
        "a tar archive uploads into a directory and downloads back"
    ),
    case!(
        files::batch_transfer_unsupported,
        NO_BATCH,
        "archive transfer is Unsupported without batch_transfer"
    ),
    // Optional operations.
    case!(
        optional::snapshot_restore_shows_file,
        SNAPSHOT,
        "a sandbox restored from a snapshot has the file written before it, not after"
    ),
    case!(
        optional::snapshot_unsupported,
        NO_SNAPSHOT,
        "snapshot and create-from-snapshot are Unsupported without fs_snapshot"
    ),
    case!(
        optional::pause_stops_processes_and_resume_continues,
        PAUSE_KEEPS_MEMORY,
        "a counter stops while paused and continues after resume"
    ),
    case!(
        optional::pause_resume_keeps_files,
        PAUSE,
        "files survive pause and resume"
    ),
    case!(
        optional::paused_sandbox_refuses_exec_until_resumed,
        PAUSE,
        "exec (and file operations) on a paused sandbox is InvalidState, promptly; after resume exec works"
    ),
    case!(
        optional::pause_of_paused_and_resume_of_running_are_invalid_state,
        PAUSE,
        "pausing a paused sandbox and resuming a running one are InvalidState naming the state"
    ),
    case!(
        optional::pause_unsupported,
        NO_PAUSE,
        "pause and resume are Unsupported without pause"
    ),
    case!(
        optional::entrypoint_runs,
        ENTRYPOINT,
        "the entrypoint runs in the working directory"
    ),
    case!(
        optional::entrypoint_output_and_exit_code,
        ENTRYPOINT_OUTPUT,
        "the entrypoint's stdout and stderr are read while it runs and resumed at an offset; its exit code is the sandbox's result"
    ),
    case!(
        optional::entrypoint_stdin_feeds_it_and_closes,
        ENTRYPOINT_STDIN,
        "the entrypoint's stdin is written at offsets (a retry applied once, a gap refused) and closed"
    ),
    case!(
        optional::entrypoint_stdin_unsupported,
        NO_ENTRYPOINT_STDIN,
        "writing to an entrypoint's stdin is Unsupported without entrypoint.stdin"
    ),
    case!(
        optional::entrypoint_output_unsupported,
        NO_ENTRYPOINT_OUTPUT,
        "reading an entrypoint's output is Unsupported without entrypoint.output"
    ),
    case!(
        optional::entrypoint_unsupported,
        NO_ENTRYPOINT,
        "an entrypoint is Unsupported without entrypoint"
    ),
    case!(
        optional::capacity_reported,
        CAPACITY,
        "capacity answers with plausible numbers"
    ),
    case!(
        optional::capacity_unsupported,
        NO_CAPACITY,
        "capacity is Unsupported without capacity_query"
    ),
    case!(
        optional::tunnels_listed,
        TUNNELS,
        "an exposed port gets a tunnel with a url"
    ),
    case!(
        optional::tunnels_unsupported,
        NO_TUNNELS,
        "tunnels and exposed ports are Unsupported without tunnels"
    ),
    case!(
        optional::volumes_unsupported,
        NO_VOLUMES,
        "a volume is Unsupported without volumes"
    ),
    // Network.
    case!(
        network::network_block_all_blocks_egress,
        BLOCK_ALL,
        "with block-all, no connection from the sandbox reaches a listener on the host"
    ),
    case!(
        network::network_block_all_unsupported,
        NO_BLOCK_ALL,
        "block-all is Unsupported without network_block_all"
    ),
    case!(
        network::network_cidr_allowlist_blocks_others,
        CIDR_ALLOWLIST,
        "with a CIDR allowlist, the host outside it is unreachable"
    ),
    case!(
        network::network_cidr_allowlist_unsupported,
        NO_CIDR_ALLOWLIST,
        "a CIDR allowlist is Unsupported without network_cidr_allowlist"
    ),
    case!(
        network::network_domain_allowlist_blocks_others,
        DOMAIN_ALLOWLIST,
        "with a domain allowlist, the host by address is unreachable"
    ),
    case!(
        network::network_domain_allowlist_unsupported,
        NO_DOMAIN_ALLOWLIST,
        "a domain allowlist is Unsupported without network_domain_allowlist"
    ),
];

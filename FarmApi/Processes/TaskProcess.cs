using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace FarmApi.Processes;

/// <summary>
/// A task command started with <c>posix_spawn</c> in a session (and process group) of its own, its stdout and stderr on
/// one pipe, for adapters whose agents run task commands themselves. <see cref="System.Diagnostics.Process"/> cannot
/// make a new session, and going through the <c>setsid</c> executable costs a second <c>exec</c> per task (about as
/// much as the task itself for short ones). Linux only: check <see cref="IsSupported"/>.
/// </summary>
public sealed unsafe partial class TaskProcess
{
    private const int PosixSpawnSetSigDef = 0x04;
    private const int PosixSpawnSetSigMask = 0x08;
    private const int PosixSpawnSetSid = 0x80;
    private const int OCloExec = 0x80000;
    private const int ORdOnly = 0;
    private const int EIntr = 4;

    // Opaque glibc/musl structures, allocated larger than any libc makes them.
    private const int OpaqueSize = 1024;

    private const int PollIn = 0x1;
    private const int PPid = 1;
    private const int WExited = 4;
    private const int WNoHang = 1;
    private const int WNoWait = 0x01000000;

    private int _ran;

    private TaskProcess(int pid, FileStream output)
    {
        Pid = pid;
        Output = output;
    }

    /// <summary>Whether this platform can spawn this way (Linux with glibc 2.29 or a libc as recent).</summary>
    public static bool IsSupported { get; } = OperatingSystem.IsLinux() && Probe();

    /// <summary>The process id, which is also its process group and session id.</summary>
    public int Pid { get; }

    /// <summary>Its stdout and stderr, merged in the order written.</summary>
    private FileStream Output { get; }

    /// <summary>
    /// Reads the output on the calling thread as it comes, until the process has ended, then returns its exit code (its
    /// status, or 128 + the signal that killed it): no thread of its own; an async caller runs it on a pool thread. Whatever the command
    /// left running in its group is killed when it ends, so a stray background process cannot hold the output open.
    /// Another thread stops it with <see cref="KillGroup"/>.
    /// </summary>
    /// <param name="append">Receives the output text, in order.</param>
    /// <returns>The exit code.</returns>
    /// <exception cref="InvalidOperationException">It was called before.</exception>
    public int RunToEnd(Action<string> append)
    {
        ArgumentNullException.ThrowIfNull(append);
        if (Interlocked.Exchange(ref _ran, 1) != 0)
        {
            throw new InvalidOperationException("RunToEnd was already called: a process is read to its end once.");
        }

        var decoder = Encoding.UTF8.GetDecoder();
        // Pooled: an agent runs a burst of short commands, and 24 KB of fresh buffers per command kept its GC busy.
        var bytes = System.Buffers.ArrayPool<byte>.Shared.Rent(8192);
        var chars = System.Buffers.ArrayPool<char>.Shared.Rent(Encoding.UTF8.GetMaxCharCount(8192));
        var descriptor = new PollDescriptor { Fd = (int)Output.SafeFileHandle.DangerousGetHandle(), Events = PollIn };
        var ended = false;
        var drainTimeouts = 0;
        var sinceCheck = System.Diagnostics.Stopwatch.StartNew();
        try
        {
            while (true)
            {
                descriptor.Revents = 0;
                var ready = Poll(&descriptor, 1, 200);
                if (ready > 0)
                {
                    var read = Output.Read(bytes, 0, 8192);
                    if (read == 0)
                    {
                        break;
                    }

                    var count = decoder.GetChars(bytes, 0, read, chars, 0, flush: false);
                    append(new string(chars, 0, count));
                    // A command that has ended while what it left behind keeps writing: noticed within ~200 ms too.
                    if (!ended && sinceCheck.ElapsedMilliseconds >= 200)
                    {
                        sinceCheck.Restart();
                        if (HasEnded())
                        {
                            ended = true;
                            KillGroup();
                        }
                    }

                    continue;
                }

                if (ready < 0 && Marshal.GetLastPInvokeError() == EIntr)
                {
                    continue;
                }

                if (ended)
                {
                    // The group was killed and the pipe is still open (a process that left the group): give up after ~5 s.
                    if (++drainTimeouts >= 25)
                    {
                        break;
                    }

                    continue;
                }

                if (HasEnded())
                {
                    // Still a zombie, so its process group cannot be reused yet: kill what it left behind.
                    ended = true;
                    KillGroup();
                }
            }
        }
        catch (IOException)
        {
        }
        finally
        {
            Output.Dispose();
            System.Buffers.ArrayPool<byte>.Shared.Return(bytes);
            System.Buffers.ArrayPool<char>.Shared.Return(chars);
        }

        return Reap();
    }

    /// <summary>Starts a command.</summary>
    /// <param name="executable">The executable's full path.</param>
    /// <param name="arguments">Its arguments.</param>
    /// <param name="environment">Its whole environment.</param>
    /// <param name="workingDirectory">Its working directory.</param>
    /// <returns>The process.</returns>
    /// <exception cref="IOException">It could not be started; the message says why.</exception>
    public static TaskProcess Start(string executable, IReadOnlyList<string> arguments, IReadOnlyDictionary<string, string> environment, string workingDirectory)
    {
        var pipe = stackalloc int[2];
        if (Pipe2(pipe, OCloExec) != 0)
        {
            throw new IOException($"pipe2 failed: {Marshal.GetLastPInvokeErrorMessage()}");
        }

        var actions = NativeMemory.AllocZeroed(OpaqueSize);
        var attributes = NativeMemory.AllocZeroed(OpaqueSize);
        var signals = NativeMemory.AllocZeroed(OpaqueSize);
        var strings = new List<nint>();
        try
        {
            Check(FileActionsInit(actions), "posix_spawn_file_actions_init");
            Check(FileActionsAddOpen(actions, 0, "/dev/null", ORdOnly, 0), "addopen");
            Check(FileActionsAddDup2(actions, pipe[1], 1), "adddup2");
            Check(FileActionsAddDup2(actions, pipe[1], 2), "adddup2");
            Check(FileActionsAddChdir(actions, workingDirectory), "addchdir");
            Check(SpawnAttrInit(attributes), "posix_spawnattr_init");
            // Default dispositions for every signal (the runtime ignores SIGPIPE, and ignored signals survive exec), none blocked.
            _ = SigFillSet(signals);
            Check(SpawnAttrSetSigDefault(attributes, signals), "setsigdefault");
            _ = SigEmptySet(signals);
            Check(SpawnAttrSetSigMask(attributes, signals), "setsigmask");
            Check(SpawnAttrSetFlags(attributes, (short)(PosixSpawnSetSid | PosixSpawnSetSigDef | PosixSpawnSetSigMask)), "setflags");

            var argv = Strings(strings, [executable, .. arguments]);
            var envp = Strings(strings, environment.Select(pair => pair.Key + "=" + pair.Value).ToList());
            int pid;
            var error = Spawn(&pid, executable, actions, attributes, argv, envp);
            if (error != 0)
            {
                throw new IOException(Marshal.GetPInvokeErrorMessage(error));
            }

            _ = Close(pipe[1]);
            pipe[1] = -1;
            var output = new FileStream(new SafeFileHandle(pipe[0], ownsHandle: true), FileAccess.Read, bufferSize: 0);
            pipe[0] = -1;
            return new TaskProcess(pid, output);
        }
        finally
        {
            _ = FileActionsDestroy(actions);
            _ = SpawnAttrDestroy(attributes);
            NativeMemory.Free(actions);
            NativeMemory.Free(attributes);
            NativeMemory.Free(signals);
            foreach (var pointer in strings)
            {
                Marshal.FreeCoTaskMem(pointer);
            }

            if (pipe[0] >= 0)
            {
                _ = Close(pipe[0]);
            }

            if (pipe[1] >= 0)
            {
                _ = Close(pipe[1]);
            }
        }
    }

    /// <summary>Kills the process's whole group (SIGKILL): the command and whatever it started.</summary>
    public void KillGroup() => _ = Kill(-Pid, 9);

    private int Reap()
    {
        int status;
        while (WaitPid(Pid, &status, 0) < 0)
        {
            if (Marshal.GetLastPInvokeError() != EIntr)
            {
                return -1;
            }
        }

        var signal = status & 0x7f;
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal;
    }

    private bool HasEnded()
    {
        // waitid with WNOWAIT: whether it has ended, leaving it to be reaped (siginfo_t is 128 bytes; si_pid at 16).
        var info = stackalloc byte[128];
        new Span<byte>(info, 128).Clear();
        return WaitId(PPid, Pid, info, WExited | WNoHang | WNoWait) == 0 && *(int*)(info + 16) == Pid;
    }

    private struct PollDescriptor
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    private static byte** Strings(List<nint> owned, IReadOnlyList<string> values)
    {
        var array = (byte**)Marshal.AllocCoTaskMem((values.Count + 1) * sizeof(nint));
        owned.Add((nint)array);
        for (var i = 0; i < values.Count; i++)
        {
            var text = Marshal.StringToCoTaskMemUTF8(values[i]);
            owned.Add(text);
            array[i] = (byte*)text;
        }

        array[values.Count] = null;
        return array;
    }

    private static void Check(int result, string what)
    {
        if (result != 0)
        {
            throw new IOException($"{what} failed: {Marshal.GetPInvokeErrorMessage(result)}");
        }
    }

    private static bool Probe()
    {
        try
        {
            var actions = NativeMemory.AllocZeroed(OpaqueSize);
            try
            {
                _ = FileActionsInit(actions);
                var ok = FileActionsAddChdir(actions, "/") == 0;
                _ = FileActionsDestroy(actions);
                return ok;
            }
            finally
            {
                NativeMemory.Free(actions);
            }
        }
        catch (Exception ex) when (ex is EntryPointNotFoundException or DllNotFoundException)
        {
            return false;
        }
    }

    [LibraryImport("libc", EntryPoint = "pipe2", SetLastError = true)]
    private static partial int Pipe2(int* fds, int flags);

    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    private static partial int Poll(PollDescriptor* descriptors, nuint count, int timeoutMs);

    [LibraryImport("libc", EntryPoint = "waitid", SetLastError = true)]
    private static partial int WaitId(int idType, int id, byte* info, int options);

    [LibraryImport("libc", EntryPoint = "kill")]
    private static partial int Kill(int pid, int signal);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "waitpid", SetLastError = true)]
    private static partial int WaitPid(int pid, int* status, int options);

    [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_init")]
    private static partial int FileActionsInit(void* actions);

    [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_destroy")]
    private static partial int FileActionsDestroy(void* actions);

    [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_addopen", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int FileActionsAddOpen(void* actions, int fd, string path, int flags, int mode);

    [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_adddup2")]
    private static partial int FileActionsAddDup2(void* actions, int fd, int newFd);

    [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_addchdir_np", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int FileActionsAddChdir(void* actions, string path);

    [LibraryImport("libc", EntryPoint = "posix_spawnattr_init")]
    private static partial int SpawnAttrInit(void* attributes);

    [LibraryImport("libc", EntryPoint = "posix_spawnattr_destroy")]
    private static partial int SpawnAttrDestroy(void* attributes);

    [LibraryImport("libc", EntryPoint = "posix_spawnattr_setflags")]
    private static partial int SpawnAttrSetFlags(void* attributes, short flags);

    [LibraryImport("libc", EntryPoint = "posix_spawnattr_setsigdefault")]
    private static partial int SpawnAttrSetSigDefault(void* attributes, void* signals);

    [LibraryImport("libc", EntryPoint = "posix_spawnattr_setsigmask")]
    private static partial int SpawnAttrSetSigMask(void* attributes, void* signals);

    [LibraryImport("libc", EntryPoint = "sigfillset")]
    private static partial int SigFillSet(void* signals);

    [LibraryImport("libc", EntryPoint = "sigemptyset")]
    private static partial int SigEmptySet(void* signals);

    [LibraryImport("libc", EntryPoint = "posix_spawn", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Spawn(int* pid, string path, void* actions, void* attributes, byte** argv, byte** envp);
}

using System.Buffers;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Microsoft.Win32.SafeHandles;

namespace FarmApi.Hashing;

/// <summary>
/// A file copy that hashes what it copies: small files in one read, one hash and one write; large ones copied by the
/// kernel (<c>copy_file_range</c>, as <c>cp</c> does on Linux) while another thread reads and hashes the source.
/// </summary>
internal static partial class KernelCopy
{
    private const int SmallFile = 1 << 20;
    private const int Chunk = 1 << 20;
    private const int Eintr = 4;
    private const int Enoent = 2;
    private const int Eexist = 17;
    private const int CreateFlags = 0x1 | 0x40 | 0x80 | 0x80000; // O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC (Linux)
    private static int _kernelCopyUnavailable;

    /// <summary>
    /// Creates <paramref name="path"/> read-only for writing through the returned handle: one <c>open</c> on Linux (a
    /// <see cref="FileStream"/> adds <c>fstat</c>, <c>fstatfs</c> and more). A file in the way is replaced; a missing
    /// folder is created.
    /// </summary>
    public static SafeFileHandle CreateReadOnly(string path)
    {
        if (!OperatingSystem.IsLinux())
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
            if (File.Exists(path) || new FileInfo(path).LinkTarget is not null)
            {
                File.Delete(path);
            }

            var handle = File.OpenHandle(path, FileMode.CreateNew, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete);
            if (!OperatingSystem.IsWindows())
            {
                // Read-only from now on; the handle open for writing still writes.
                File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
            }

            return handle;
        }

        for (var attempt = 0; ; attempt++)
        {
            var fd = OpenFile(path, CreateFlags, 0x124); // 0444
            if (fd >= 0)
            {
                return new SafeFileHandle(fd, ownsHandle: true);
            }

            var errno = Marshal.GetLastPInvokeError();
            if (errno == Eintr)
            {
                continue;
            }

            if (attempt < 3 && errno == Eexist)
            {
                File.Delete(path); // an older file (or link) in the way
                continue;
            }

            if (attempt < 3 && errno == Enoent)
            {
                Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
                continue;
            }

            throw new IOException($"Cannot create {path}: {Marshal.GetPInvokeErrorMessage(errno)}.");
        }
    }

    public static async Task<string> CopyAndHashAsync(SafeFileHandle source, SafeFileHandle target, long length, CancellationToken cancellationToken)
    {
        if (length <= SmallFile)
        {
            return CopySmall(source, target);
        }

        var hashing = Task.Run(() => Hash(source, cancellationToken), cancellationToken);
        try
        {
            Copy(source, target, cancellationToken);
        }
        finally
        {
            // The hashing thread reads the source handle: it ends before the caller closes it.
            await ((Task)hashing).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        return await hashing.ConfigureAwait(false);
    }

    /// <summary>Copies without hashing: by the kernel where it can, else through a buffer.</summary>
    public static void Copy(SafeFileHandle source, SafeFileHandle target, CancellationToken cancellationToken)
    {
        if (!OperatingSystem.IsLinux() || Volatile.Read(ref _kernelCopyUnavailable) != 0 || !TryKernelCopy(source, target, cancellationToken))
        {
            CopyInUserSpace(source, target, cancellationToken);
        }
    }

    private static string CopySmall(SafeFileHandle source, SafeFileHandle target)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(SmallFile + 1);
        try
        {
            var total = 0;
            int read;
            while ((read = RandomAccess.Read(source, buffer.AsSpan(total), total)) > 0)
            {
                total += read;
                if (total == buffer.Length)
                {
                    // It grew past the small-file size since it was measured: the rest the general way.
                    RandomAccess.Write(target, buffer.AsSpan(0, total), 0);
                    using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
                    sha.AppendData(buffer, 0, total);
                    CopyRest(source, target, sha, total);
                    return Convert.ToHexStringLower(sha.GetHashAndReset());
                }
            }

            RandomAccess.Write(target, buffer.AsSpan(0, total), 0);
            return Convert.ToHexStringLower(SHA256.HashData(buffer.AsSpan(0, total)));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static void CopyRest(SafeFileHandle source, SafeFileHandle target, IncrementalHash sha, long offset) =>
        ReadChunks(source, offset, (buffer, read, at) =>
        {
            sha.AppendData(buffer, 0, read);
            RandomAccess.Write(target, buffer.AsSpan(0, read), at);
        }, CancellationToken.None);

    private static string Hash(SafeFileHandle source, CancellationToken cancellationToken)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        ReadChunks(source, 0, (buffer, read, _) => sha.AppendData(buffer, 0, read), cancellationToken);
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    private static void CopyInUserSpace(SafeFileHandle source, SafeFileHandle target, CancellationToken cancellationToken) =>
        ReadChunks(source, 0, (buffer, read, at) => RandomAccess.Write(target, buffer.AsSpan(0, read), at), cancellationToken);

    /// <summary>Reads the file from <paramref name="offset"/> to its end in 1 MiB chunks: (buffer, bytes read, their offset).</summary>
    private static void ReadChunks(SafeFileHandle source, long offset, Action<byte[], int, long> chunk, CancellationToken cancellationToken)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(Chunk);
        try
        {
            int read;
            while ((read = RandomAccess.Read(source, buffer.AsSpan(0, Chunk), offset)) > 0)
            {
                cancellationToken.ThrowIfCancellationRequested();
                chunk(buffer, read, offset);
                offset += read;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Copies with <c>copy_file_range</c>; false (nothing written) when the kernel cannot do it for these files.</summary>
    private static unsafe bool TryKernelCopy(SafeFileHandle source, SafeFileHandle target, CancellationToken cancellationToken)
    {
        var added = false;
        var addedTarget = false;
        try
        {
            source.DangerousAddRef(ref added);
            target.DangerousAddRef(ref addedTarget);
            var input = (int)source.DangerousGetHandle();
            var output = (int)target.DangerousGetHandle();
            long inOffset = 0;
            long outOffset = 0;
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var copied = CopyFileRange(input, &inOffset, output, &outOffset, 1 << 26, 0);
                if (copied == 0)
                {
                    return true;
                }

                if (copied < 0)
                {
                    var errno = Marshal.GetLastPInvokeError();
                    if (errno == Eintr)
                    {
                        continue;
                    }

                    if (inOffset == 0)
                    {
                        // ENOSYS, EXDEV, EINVAL, EOPNOTSUPP...: not for these files; remember ENOSYS for every file.
                        if (errno == 38)
                        {
                            Volatile.Write(ref _kernelCopyUnavailable, 1);
                        }

                        return false;
                    }

                    throw new IOException($"Copying a file failed: {Marshal.GetPInvokeErrorMessage(errno)}.");
                }
            }
        }
        finally
        {
            if (added)
            {
                source.DangerousRelease();
            }

            if (addedTarget)
            {
                target.DangerousRelease();
            }
        }
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int OpenFile(string path, int flags, int mode);

    [LibraryImport("libc", EntryPoint = "copy_file_range", SetLastError = true)]
    private static unsafe partial nint CopyFileRange(int input, long* inputOffset, int output, long* outputOffset, nuint length, uint flags);
}

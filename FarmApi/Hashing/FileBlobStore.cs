using System.Runtime.InteropServices;

namespace FarmApi.Hashing;

/// <summary>
/// A content-addressed store of files in a folder: each blob is kept once under its SHA-256
/// (<c>&lt;root&gt;/ab/abcdef…</c>), read-only, and laid out into job folders by hard link where the filesystem allows
/// (a copy otherwise).
/// </summary>
public sealed partial class FileBlobStore
{
    /// <summary>Opens (and creates) the store at <paramref name="root"/>.</summary>
    /// <param name="root">The store's folder.</param>
    public FileBlobStore(string root)
    {
        ArgumentException.ThrowIfNullOrEmpty(root);
        Root = Path.GetFullPath(root);
        Directory.CreateDirectory(Root);
    }

    /// <summary>The store's folder.</summary>
    public string Root { get; }

    /// <summary>Where the blob of <paramref name="hash"/> is (or would be) kept.</summary>
    /// <param name="hash">A content hash.</param>
    /// <returns>The blob's path.</returns>
    /// <exception cref="ArgumentException">The hash is not 64 lowercase hexadecimal characters.</exception>
    public string GetPath(string hash)
    {
        if (!ContentHash.IsValid(hash))
        {
            throw new ArgumentException($"'{hash}' is not a SHA-256 content hash (64 lowercase hexadecimal characters).", nameof(hash));
        }

        return Path.Combine(Root, hash[..2], hash);
    }

    /// <summary>Whether the store holds the blob of <paramref name="hash"/>.</summary>
    /// <param name="hash">A content hash.</param>
    /// <returns><see langword="true"/> when it is stored.</returns>
    public bool Contains(string hash) => ContentHash.IsValid(hash) && File.Exists(GetPath(hash));

    /// <summary>Stores a file's content unless it is already there.</summary>
    /// <param name="sourcePath">The file.</param>
    /// <param name="knownHash">Its hash when already known (from a <see cref="HashCache"/>); it is verified when the file is copied in.</param>
    /// <param name="cancellationToken">Cancels the copy.</param>
    /// <returns>The content hash.</returns>
    public async Task<string> AddFileAsync(string sourcePath, string? knownHash = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(sourcePath);
        if (knownHash is not null && Contains(knownHash))
        {
            return knownHash;
        }

        // An unknown hash is computed while the file is copied in: one read of the file, not two.
        var source = new FileStream(sourcePath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete,
            1, FileOptions.SequentialScan);
        await using (source.ConfigureAwait(false))
        {
            return await AddStreamAsync(source, knownHash, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Stores a stream's content, checking it against <paramref name="expectedHash"/> when given.</summary>
    /// <param name="content">The content.</param>
    /// <param name="expectedHash">The hash the content must have, or null.</param>
    /// <param name="cancellationToken">Cancels the copy.</param>
    /// <returns>The content hash.</returns>
    /// <exception cref="InvalidDataException">The content does not match <paramref name="expectedHash"/>; nothing is stored.</exception>
    public async Task<string> AddStreamAsync(Stream content, string? expectedHash = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(content);
        if (expectedHash is not null && !ContentHash.IsValid(expectedHash))
        {
            throw new ArgumentException($"'{expectedHash}' is not a SHA-256 content hash.", nameof(expectedHash));
        }

        var temporary = Path.Combine(Root, $"incoming-{Guid.NewGuid():N}.tmp");
        try
        {
            string hash;
            var target = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1);
            await using (target.ConfigureAwait(false))
            {
                using var sha = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
                // Large blocks: a staged tree is mostly big files, and each block is one read and one write call.
                var buffer = new byte[1 << 20];
                int read;
                while ((read = await content.ReadAsync(buffer, cancellationToken).ConfigureAwait(false)) > 0)
                {
                    sha.AppendData(buffer, 0, read);
                    await target.WriteAsync(buffer.AsMemory(0, read), cancellationToken).ConfigureAwait(false);
                }

                hash = Convert.ToHexStringLower(sha.GetHashAndReset());
            }

            if (expectedHash is not null && hash != expectedHash)
            {
                throw new InvalidDataException($"The content's SHA-256 is {hash}, not the {expectedHash} announced; it was not stored.");
            }

            var final = GetPath(hash);
            Directory.CreateDirectory(Path.GetDirectoryName(final)!);
            if (!File.Exists(final))
            {
                if (!OperatingSystem.IsWindows())
                {
                    File.SetUnixFileMode(temporary, UnixFileMode.UserRead | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
                }

                // Another writer may have stored the same content meanwhile: both are identical, either wins.
                File.Move(temporary, final, overwrite: true);
            }

            return hash;
        }
        finally
        {
            if (File.Exists(temporary))
            {
                File.Delete(temporary);
            }
        }
    }

    /// <summary>
    /// Copies a file to <paramref name="destinationPath"/> and keeps that copy as the blob of its content (a hard link into
    /// the store), hashing the file while the kernel copies it: the bytes are written once, not into the store and then
    /// again, and the hash costs no time of its own on a machine with a core to spare. The copy is read-only, as a
    /// linked blob is. When the store is on another filesystem the copy stays and the blob is copied in besides.
    /// </summary>
    /// <param name="sourcePath">The file.</param>
    /// <param name="destinationPath">The file to create or replace.</param>
    /// <param name="cancellationToken">Cancels the copy.</param>
    /// <returns>The content hash.</returns>
    public async Task<string> CopyAndAddAsync(string sourcePath, string destinationPath, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(sourcePath);
        ArgumentException.ThrowIfNullOrEmpty(destinationPath);
        // Few calls to the filesystem per file (a staged tree is mostly small files, where they are the cost): the
        // source is measured through its open handle, the destination created at once (its folder and an old file in
        // the way are dealt with only when the creation says so), the blob linked without looking first.
        string hash;
        using (var source = OpenSource(sourcePath))
        {
            var (length, modified) = (RandomAccess.GetLength(source), File.GetLastWriteTimeUtc(source));
            using (var target = KernelCopy.CreateReadOnly(destinationPath))
            {
                hash = await KernelCopy.CopyAndHashAsync(source, target, length, cancellationToken).ConfigureAwait(false);
            }

            if (RandomAccess.GetLength(source) != length || File.GetLastWriteTimeUtc(source) != modified)
            {
                // The file changed while it was read twice (copied and hashed): the copy's own content names the blob.
                hash = await ContentHash.ComputeFileAsync(destinationPath, cancellationToken).ConfigureAwait(false);
            }
        }

        await KeepAsBlobAsync(destinationPath, hash, cancellationToken).ConfigureAwait(false);
        return hash;
    }

    /// <summary>
    /// Copies a file to <paramref name="destinationPath"/>, read-only, by the kernel (<c>copy_file_range</c>, as <c>cp</c>
    /// does) and without reading it in user space or hashing it: the fast half of <see cref="CopyAndAddAsync"/>.
    /// <see cref="AdoptAsync"/> hashes such a copy afterwards and keeps it as the blob of its content, so a caller can
    /// lay out a tree at the speed of <c>cp</c> and content-address it off its critical path.
    /// </summary>
    /// <param name="sourcePath">The file.</param>
    /// <param name="destinationPath">The file to create or replace.</param>
    /// <param name="cancellationToken">Cancels the copy.</param>
    /// <returns>A task that completes when the copy is made.</returns>
    public Task CopyReadOnlyAsync(string sourcePath, string destinationPath, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(sourcePath);
        ArgumentException.ThrowIfNullOrEmpty(destinationPath);
        using var source = OpenSource(sourcePath);
        using var target = KernelCopy.CreateReadOnly(destinationPath);
        KernelCopy.Copy(source, target, cancellationToken);
        return Task.CompletedTask;
    }

    /// <summary>
    /// Hashes a read-only file (a copy made by <see cref="CopyReadOnlyAsync"/>) and keeps it as the blob of its content:
    /// a hard link into the store, or a copy where links cannot be made.
    /// </summary>
    /// <param name="path">The file.</param>
    /// <param name="cancellationToken">Cancels the hashing.</param>
    /// <returns>The content hash.</returns>
    public async Task<string> AdoptAsync(string path, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1 << 16, FileOptions.SequentialScan);
        await using (file.ConfigureAwait(false))
        {
            var hash = await ContentHash.ComputeAsync(file, cancellationToken).ConfigureAwait(false);
            // The file that was hashed is linked through its open descriptor, not its name: a file put at that path in the
            // meantime (a task replacing its input) can never become the blob of another file's hash.
            var descriptor = $"/proc/self/fd/{file.SafeFileHandle.DangerousGetHandle()}";
            await KeepAsBlobAsync(hash,
                OperatingSystem.IsLinux() ? blob => LinkAt(AtCurrentDirectory, descriptor, AtCurrentDirectory, blob, AtSymlinkFollow) : null,
                () =>
                {
                    // No links through a descriptor here: the store keeps its own copy of what was hashed.
                    file.Position = 0;
                    return AddStreamAsync(file, hash, cancellationToken);
                }).ConfigureAwait(false);
            return hash;
        }
    }

    private const int AtCurrentDirectory = -100;
    private const int AtSymlinkFollow = 0x400;

    [LibraryImport("libc", EntryPoint = "linkat", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int LinkAt(int oldDirectory, string oldPath, int newDirectory, string newPath, int flags);

    /// <summary>Makes <paramref name="path"/> (whose content hashes to <paramref name="hash"/>) the blob of that content, unless it is stored already.</summary>
    private Task KeepAsBlobAsync(string path, string hash, CancellationToken cancellationToken) =>
        KeepAsBlobAsync(hash, OperatingSystem.IsWindows() ? null : blob => Link(path, blob), async () =>
        {
            // No hard links here (another filesystem, or Windows): the store gets its own copy.
            var copy = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1, FileOptions.SequentialScan);
            await using (copy.ConfigureAwait(false))
            {
                await AddStreamAsync(copy, hash, cancellationToken).ConfigureAwait(false);
            }
        });

    /// <summary>
    /// Keeps a file as the blob of <paramref name="hash"/> unless it is stored already: <paramref name="link"/> makes a hard
    /// link at the blob's path (0, or -1 with errno), its folder created when missing; where there is no link to make, or
    /// the link cannot be made, <paramref name="copy"/> adds the content to the store.
    /// </summary>
    private async Task KeepAsBlobAsync(string hash, Func<string, int>? link, Func<Task> copy)
    {
        var blob = GetPath(hash);
        if (link is not null)
        {
            var linked = link(blob);
            if (linked != 0 && Marshal.GetLastPInvokeError() == NoSuchEntry && !File.Exists(blob))
            {
                Directory.CreateDirectory(Path.GetDirectoryName(blob)!);
                linked = link(blob);
            }

            // Linked, or already stored (EEXIST): either way the blob is there.
            if (linked == 0 || File.Exists(blob))
            {
                return;
            }
        }
        else if (File.Exists(blob))
        {
            return;
        }

        await copy().ConfigureAwait(false);
    }

    private const int NoSuchEntry = 2;
    private const int AlreadyExists = 17;

    private static Microsoft.Win32.SafeHandles.SafeFileHandle OpenSource(string path)
    {
        try
        {
            return File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        }
        catch (DirectoryNotFoundException e)
        {
            throw new FileNotFoundException($"'{path}' does not exist.", path, e);
        }
    }

    /// <summary>Lays a stored blob out at <paramref name="destinationPath"/>: a hard link where possible, else a copy.</summary>
    /// <param name="hash">The content hash.</param>
    /// <param name="destinationPath">The file to create or replace.</param>
    /// <param name="cancellationToken">Cancels the copy.</param>
    /// <returns><see langword="true"/> when linked, <see langword="false"/> when copied.</returns>
    /// <exception cref="FileNotFoundException">The blob is not stored.</exception>
    public async Task<bool> LinkOrCopyAsync(string hash, string destinationPath, CancellationToken cancellationToken = default)
    {
        var blob = GetPath(hash);
        if (!OperatingSystem.IsWindows())
        {
            // The link first; its error says what is in the way (one call per file in the common case: a second staging
            // of a tree is mostly these).
            for (var attempt = 0; attempt < 3; attempt++)
            {
                if (Link(blob, destinationPath) == 0)
                {
                    return true;
                }

                var errno = Marshal.GetLastPInvokeError();
                if (errno == AlreadyExists)
                {
                    File.Delete(destinationPath); // an older file (or link) in the way
                }
                else if (errno == NoSuchEntry && File.Exists(blob))
                {
                    Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(destinationPath))!);
                }
                else
                {
                    break;
                }
            }
        }

        if (!File.Exists(blob))
        {
            throw new FileNotFoundException($"No blob {hash} in {Root}.", blob);
        }

        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(destinationPath))!);
        if (File.Exists(destinationPath) || new FileInfo(destinationPath).LinkTarget is not null)
        {
            File.Delete(destinationPath);
        }

        var temporary = destinationPath + $".{Guid.NewGuid():N}.tmp";
        var source = new FileStream(blob, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.Asynchronous);
        await using (source.ConfigureAwait(false))
        {
            var target = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, FileOptions.Asynchronous);
            await using (target.ConfigureAwait(false))
            {
                await source.CopyToAsync(target, cancellationToken).ConfigureAwait(false);
            }
        }

        File.Move(temporary, destinationPath, overwrite: true);
        return false;
    }

    [LibraryImport("libc", EntryPoint = "link", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Link(string existingPath, string newPath);
}

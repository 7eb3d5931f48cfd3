using System.Security.Cryptography;

namespace FarmApi.Hashing;

/// <summary>SHA-256 content hashes, as lowercase hexadecimal: the key of every content-addressed store here.</summary>
public static class ContentHash
{
    /// <summary>The length of a hash in hexadecimal characters.</summary>
    public const int HexLength = 64;

    /// <summary>Hashes a file's content.</summary>
    /// <param name="path">The file.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The lowercase hexadecimal SHA-256.</returns>
    public static async Task<string> ComputeFileAsync(string path, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete,
            bufferSize: 1 << 16, FileOptions.Asynchronous | FileOptions.SequentialScan);
        await using (stream.ConfigureAwait(false))
        {
            return await ComputeAsync(stream, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Hashes a stream's remaining content.</summary>
    /// <param name="stream">The stream.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The lowercase hexadecimal SHA-256.</returns>
    public static async Task<string> ComputeAsync(Stream stream, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var hash = await SHA256.HashDataAsync(stream, cancellationToken).ConfigureAwait(false);
        return Convert.ToHexStringLower(hash);
    }

    /// <summary>Hashes bytes.</summary>
    /// <param name="data">The bytes.</param>
    /// <returns>The lowercase hexadecimal SHA-256.</returns>
    public static string Compute(ReadOnlySpan<byte> data) => Convert.ToHexStringLower(SHA256.HashData(data));

    /// <summary>Whether <paramref name="hash"/> is 64 lowercase hexadecimal characters (safe as a file name).</summary>
    /// <param name="hash">The text.</param>
    /// <returns><see langword="true"/> when it is a well-formed hash.</returns>
    public static bool IsValid(string? hash) =>
        hash is { Length: HexLength } && hash.All(c => char.IsAsciiDigit(c) || c is >= 'a' and <= 'f');
}

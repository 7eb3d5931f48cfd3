using System.Security.Cryptography;
using FarmApi.Hashing;
using FarmPlugins.TestSupport;
using Xunit;

namespace FarmApi.Tests.Hashing;

public sealed class HashingTests : IDisposable
{
    private readonly TempDir _dir = new("hashing");

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task ComputeFileAsync_EqualsSha256OfTheBytes()
    {
        var bytes = RandomNumberGenerator.GetBytes(200_000);
        var path = _dir.Combine("a.bin");
        await File.WriteAllBytesAsync(path, bytes);

        var hash = await ContentHash.ComputeFileAsync(path);

        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(bytes)), hash);
        Assert.True(ContentHash.IsValid(hash));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("ABCDEF")]
    [InlineData("../../etc/passwd")]
    [InlineData("E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855")]
    public void IsValid_RefusesWhatIsNotALowercaseHash(string? text) => Assert.False(ContentHash.IsValid(text));

    [Fact]
    public async Task HashCache_SkipsUnchangedFiles_AndRehashesChangedOnes_AcrossInstances()
    {
        var file = _dir.WriteFile("scene.pov", "sphere { 0, 1 }");
        var cacheFile = _dir.Combine("cache", "hashes.tsv");
        var first = new HashCache(cacheFile);
        var hash1 = await first.GetHashAsync(file);
        await first.GetHashAsync(file);
        await first.SaveAsync();
        Assert.Equal(1, first.FilesHashed);

        var second = new HashCache(cacheFile);
        Assert.Equal(hash1, await second.GetHashAsync(file));
        Assert.Equal(0, second.FilesHashed);

        await File.WriteAllTextAsync(file, "sphere { 0, 2 }");
        File.SetLastWriteTimeUtc(file, DateTime.UtcNow.AddMinutes(1));
        var hash2 = await second.GetHashAsync(file);
        Assert.NotEqual(hash1, hash2);
        Assert.Equal(1, second.FilesHashed);
    }

    [Fact]
    public async Task HashCache_Remember_AnswersTryGetCached_UntilTheFileChanges()
    {
        var path = _dir.WriteFile("r.txt", "remembered");
        var info = new FileInfo(path);
        var cache = new HashCache(_dir.Combine("remember.cache"));
        var hash = await ContentHash.ComputeFileAsync(path);

        Assert.False(cache.TryGetCached(path, out _));
        cache.Remember(path, info.Length, info.LastWriteTimeUtc, hash);
        Assert.True(cache.TryGetCached(path, out var cached));
        Assert.Equal(hash, cached);

        await File.WriteAllTextAsync(path, "changed, longer content");
        Assert.False(cache.TryGetCached(path, out _));
        // A hash for a file that changed since it was read is not recorded.
        cache.Remember(path, info.Length, info.LastWriteTimeUtc, hash);
        Assert.False(cache.TryGetCached(path, out _));
        Assert.Throws<ArgumentException>(() => cache.Remember(path, 1, DateTime.UtcNow, "not-a-hash"));
    }

    [Fact]
    public async Task HashCache_TryGetCached_WithTheCallersMeasurement_AnswersOnlyForThatSizeAndTime()
    {
        var path = _dir.WriteFile("m.txt", "measured");
        var info = new FileInfo(path);
        var cache = new HashCache(_dir.Combine("measured.cache"));
        var hash = await ContentHash.ComputeFileAsync(path);

        Assert.False(cache.TryGetCached(path, info.Length, info.LastWriteTimeUtc, out _));
        cache.Remember(path, info.Length, info.LastWriteTimeUtc, hash);
        Assert.True(cache.TryGetCached(path, info.Length, info.LastWriteTimeUtc, out var cached));
        Assert.Equal(hash, cached);
        Assert.False(cache.TryGetCached(path, info.Length + 1, info.LastWriteTimeUtc, out _));
        Assert.False(cache.TryGetCached(path, info.Length, info.LastWriteTimeUtc.AddSeconds(1), out _));
        Assert.False(cache.TryGetCached(_dir.Combine("other.txt"), info.Length, info.LastWriteTimeUtc, out _));
    }

    [Fact]
    public async Task BlobStore_AddFile_WithoutAKnownHash_HashesWhileCopying()
    {
        var bytes = RandomNumberGenerator.GetBytes(3_000_000);
        var path = _dir.Combine("big.bin");
        await File.WriteAllBytesAsync(path, bytes);
        var store = new FileBlobStore(_dir.Combine("blobs"));

        var hash = await store.AddFileAsync(path);

        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(bytes)), hash);
        Assert.Equal(bytes, await File.ReadAllBytesAsync(store.GetPath(hash)));
        Assert.Empty(Directory.GetFiles(store.Root, "incoming-*"));
    }

    [Fact]
    public async Task HashCache_DamagedCacheFile_StartsEmpty()
    {
        var cacheFile = _dir.WriteFile("hashes.tsv", "garbage\tline\nnot a hash\t1\t2\t/x\n");
        var file = _dir.WriteFile("a.txt", "a");
        var cache = new HashCache(cacheFile);
        Assert.Equal(ContentHash.Compute("a"u8), await cache.GetHashAsync(file));
    }

    [Fact]
    public async Task BlobStore_StoresOnce_AndLinksIntoJobFolders()
    {
        var store = new FileBlobStore(_dir.Combine("blobs"));
        var source = _dir.WriteFile("src/tex.png", "pixels");
        var hash = await store.AddFileAsync(source);
        Assert.True(store.Contains(hash));
        Assert.Equal(hash, await store.AddFileAsync(source));

        var destination = _dir.Combine("job", "textures", "tex.png");
        var linked = await store.LinkOrCopyAsync(hash, destination);

        Assert.True(linked);
        Assert.Equal("pixels", await File.ReadAllTextAsync(destination));
        Assert.Single(Directory.GetFiles(store.Root, "*", SearchOption.AllDirectories));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    [InlineData(1 << 20)]
    [InlineData((3 << 20) + 17)]
    public async Task BlobStore_CopyAndAdd_CopiesHashesAndKeepsTheCopyAsTheBlob(int size)
    {
        var store = new FileBlobStore(_dir.Combine("blobs"));
        var bytes = new byte[size];
        new Random(size).NextBytes(bytes);
        var source = _dir.Combine("src", $"f{size}.bin");
        Directory.CreateDirectory(Path.GetDirectoryName(source)!);
        await File.WriteAllBytesAsync(source, bytes);
        var destination = _dir.Combine("job", "deep", "f.bin");
        Directory.CreateDirectory(Path.GetDirectoryName(destination)!);
        await File.WriteAllTextAsync(destination, "an older file in the way");

        var hash = await store.CopyAndAddAsync(source, destination);

        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(bytes)), hash);
        Assert.Equal(bytes, await File.ReadAllBytesAsync(destination));
        Assert.True(store.Contains(hash));
        Assert.Equal(bytes, await File.ReadAllBytesAsync(store.GetPath(hash)));
        // The job's copy is the blob (one inode, read-only), not a second copy of the bytes.
        Assert.Equal(2, LinkCount(destination));
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.GroupRead | UnixFileMode.OtherRead, File.GetUnixFileMode(destination));
        }

        // The same content again, elsewhere: the blob is kept, the new copy is the job's own.
        var second = _dir.Combine("job2", "f.bin");
        Assert.Equal(hash, await store.CopyAndAddAsync(source, second));
        Assert.Equal(bytes, await File.ReadAllBytesAsync(second));
        Assert.Single(Directory.GetFiles(store.Root, "*", SearchOption.AllDirectories));
    }

    [Fact]
    public async Task BlobStore_CopyAndAdd_OfAMissingFile_FailsAndWritesNothing()
    {
        var store = new FileBlobStore(_dir.Combine("blobs"));

        await Assert.ThrowsAsync<FileNotFoundException>(() => store.CopyAndAddAsync(_dir.Combine("nope.bin"), _dir.Combine("job", "nope.bin")));

        Assert.False(File.Exists(_dir.Combine("job", "nope.bin")));
        Assert.Empty(Directory.GetFiles(store.Root, "*", SearchOption.AllDirectories));
    }

    private static long LinkCount(string path) => FileFacts.LinkCount(path);

    [Theory]
    [InlineData(0)]
    [InlineData(7)]
    [InlineData((2 << 20) + 5)]
    public async Task BlobStore_CopyReadOnly_ThenAdopt_KeepsTheCopyAsTheBlob(int size)
    {
        var store = new FileBlobStore(_dir.Combine("blobs"));
        var bytes = new byte[size];
        new Random(size + 1).NextBytes(bytes);
        var source = _dir.Combine("src", $"a{size}.bin");
        Directory.CreateDirectory(Path.GetDirectoryName(source)!);
        await File.WriteAllBytesAsync(source, bytes);
        var copy = _dir.Combine("job", "sub", "a.bin");

        await store.CopyReadOnlyAsync(source, copy);

        // In place at once, read-only, not stored yet.
        Assert.Equal(bytes, await File.ReadAllBytesAsync(copy));
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.GroupRead | UnixFileMode.OtherRead, File.GetUnixFileMode(copy));
        }

        var hash = Convert.ToHexStringLower(SHA256.HashData(bytes));
        Assert.False(store.Contains(hash));

        Assert.Equal(hash, await store.AdoptAsync(copy));
        Assert.True(store.Contains(hash));
        Assert.Equal(2, LinkCount(copy));
        // A second copy of the same content: the first blob is kept.
        var again = _dir.Combine("job2", "a.bin");
        await store.CopyReadOnlyAsync(source, again);
        Assert.Equal(hash, await store.AdoptAsync(again));
        Assert.Equal(1, LinkCount(again));
        Assert.Single(Directory.GetFiles(store.Root, "*", SearchOption.AllDirectories));
        await Assert.ThrowsAsync<FileNotFoundException>(() => store.CopyReadOnlyAsync(_dir.Combine("nope.bin"), _dir.Combine("job", "nope.bin")));
    }

    [Fact]
    public async Task BlobStore_ContentNotMatchingItsHash_IsRefused_AndNothingIsStored()
    {
        var store = new FileBlobStore(_dir.Combine("blobs"));
        var wrong = ContentHash.Compute("other"u8);

        await Assert.ThrowsAsync<InvalidDataException>(() => store.AddStreamAsync(new MemoryStream("content"u8.ToArray()), wrong));

        Assert.Empty(Directory.GetFiles(store.Root, "*", SearchOption.AllDirectories));
    }

    [Fact]
    public void BlobStore_PathOfAMalformedHash_IsRefused()
    {
        var store = new FileBlobStore(_dir.Combine("blobs"));
        Assert.Throws<ArgumentException>(() => store.GetPath("../../../etc/passwd"));
        Assert.False(store.Contains("../x"));
    }
}

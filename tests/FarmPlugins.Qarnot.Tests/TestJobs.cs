using System.Security.Cryptography;
using Amazon.S3.Model;
using FarmApi;
using FarmPlugins.TestSupport;
using Xunit;

namespace FarmPlugins.Qarnot.Tests;

/// <summary>Submitting and following jobs in tests; reading objects back from S3 with their length and hash checked.</summary>
internal static class TestJobs
{
    public static readonly TimeSpan Generous = TimeSpan.FromSeconds(60);

    public static TaskSpec Sh(string id, string script, string[]? dependsOn = null, string[]? outputs = null) =>
        new(id, [Command.Of("/bin/sh", "-c", script)], dependsOn, outputs);

    public static async Task<(string JobId, RenderContext Context, string Folder)> SubmitAsync(BaseFarmPlugin plugin, IReadOnlyList<TaskSpec> tasks,
        RenderContext? context = null, int maxAttempts = 1)
    {
        context ??= RenderContext.Create("qarnot-test");
        var folder = await plugin.CreateTemporaryFolderAsync(context);
        var jobId = await plugin.SubmitJobAsync(new JobRequest
        {
            Context = context,
            Name = "qarnot-test",
            Tasks = tasks,
            TemporaryFolder = folder,
            MaxAttempts = maxAttempts,
        });
        return (jobId, context, folder);
    }

    public static async Task<Job> WaitTerminalAsync(QarnotFixture fixture, string jobId)
    {
        Job? job = null;
        await Eventually.WaitAsync(async () =>
        {
            await using var plugin = await fixture.NewPluginAsync();
            job = await plugin.GetJobAsync(jobId);
            return job.State.IsTerminal();
        }, Generous, $"job {jobId} to end", TimeSpan.FromMilliseconds(100));
        return job!;
    }

    /// <summary>An object's bytes, checked against the length and SHA-256 expected (S3 failures are silent).</summary>
    public static async Task<byte[]> ReadObjectAsync(QarnotFixture fixture, string bucket, string key, long expectedLength, string expectedSha256)
    {
        using var response = await fixture.Emulator.S3.GetObjectAsync(new GetObjectRequest { BucketName = bucket, Key = key });
        using var memory = new MemoryStream();
        await response.ResponseStream.CopyToAsync(memory);
        var bytes = memory.ToArray();
        Assert.Equal(expectedLength, bytes.LongLength);
        Assert.Equal(expectedSha256, Sha256(bytes));
        return bytes;
    }

    public static string Sha256(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    public static async Task<string> Sha256FileAsync(string path)
    {
        await using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(await SHA256.HashDataAsync(stream));
    }

    public static string RandomFile(TempDir dir, string relative, int length)
    {
        var bytes = new byte[length];
        Random.Shared.NextBytes(bytes);
        var path = dir.Combine(relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, bytes);
        return path;
    }
}

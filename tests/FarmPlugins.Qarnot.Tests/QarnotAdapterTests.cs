using System.Net;
using System.Text;
using Amazon.S3.Model;
using FarmApi;
using FarmPlugins.TestSupport;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Xunit;
using static FarmPlugins.Qarnot.Tests.TestJobs;

namespace FarmPlugins.Qarnot.Tests;

/// <summary>The Qarnot adapter against the emulator and the real S3 server: what a user of Qarnot would notice.</summary>
[Collection(QarnotCollection.Name)]
public sealed class QarnotAdapterTests(QarnotFixture fixture) : IDisposable
{
    private readonly TempDir _dir = new("qarnot-test");

    public void Dispose()
    {
        fixture.Emulator?.ClearFaults();
        _dir.Dispose();
    }

    // Stages files as a new host process would: a plug-in instance of its own, disposed afterwards.
    private async Task StageAsNewHostAsync(RenderContext context, IReadOnlyList<RenderFile> files, ILoggerFactory loggerFactory, string? dataDirectory = null)
    {
        await using var plugin = await fixture.NewPluginAsync(dataDirectory, loggerFactory: loggerFactory);
        await plugin.CopyRenderFilesAsync(context, await plugin.CreateTemporaryFolderAsync(context), files);
    }

    // What each staging logged ("N uploaded (B bytes), M already there"), in order.
    private static List<string> Staged(FakeLogCollector logs) => [.. logs.GetSnapshot().Where(r => r.Id.Id == 6002).Select(r => r.Message)];

    [ComponentFact(Components.S3)]
    public async Task CopyRenderFiles_StoresEveryByte_InMultipartAbove8MiB_AndSendsNothingTheSecondTime()
    {
        var files = new[]
        {
            new RenderFile(RandomFile(_dir, "small.bin", 1_000), "scene/small.bin"),
            new RenderFile(RandomFile(_dir, "medium.bin", 3_000_000), "medium.bin"),
            new RenderFile(RandomFile(_dir, "big.bin", (20 << 20) + 123), "maps/big.bin"),
        };
        var logs = new FakeLogCollector();
        using var loggerFactory = LoggerFactory.Create(b => b.AddProvider(new FakeLoggerProvider(logs)));
        await using var plugin = await fixture.NewPluginAsync(loggerFactory: loggerFactory);
        var context = RenderContext.Create("upload");
        var folder = await plugin.CreateTemporaryFolderAsync(context);
        var reports = new List<TransferProgress>();

        var remote = await plugin.CopyRenderFilesAsync(context, folder, files, new SynchronousProgress<TransferProgress>(reports.Add));

        Assert.Equal($"s3://farmtests-resources/{context.Id}/maps/big.bin", remote[2]);
        var total = files.Sum(f => new FileInfo(f.LocalPath).Length);
        Assert.Equal(new TransferProgress(total, total, 3, 3, null), reports[^1]);
        foreach (var file in files)
        {
            var bytes = await File.ReadAllBytesAsync(file.LocalPath);
            await ReadObjectAsync(fixture, "farmtests-resources", $"{context.Id}/{file.RelativePath}", bytes.Length, Sha256(bytes));
        }

        await StageAsNewHostAsync(context, files, loggerFactory);
        var staged = Staged(logs);
        Assert.Equal(2, staged.Count);
        Assert.Contains("3 uploaded", staged[0], StringComparison.Ordinal);
        Assert.Contains("0 uploaded (0 bytes), 3 already there", staged[1], StringComparison.Ordinal);
    }

    [ComponentFact(Components.S3)]
    public async Task CopyRenderFiles_FromAnotherWorkstation_HashesAndSendsNothingAlreadyThere()
    {
        var files = new[]
        {
            new RenderFile(RandomFile(_dir, "small.bin", 3_000), "small.bin"),
            new RenderFile(RandomFile(_dir, "edge.bin", QarnotStorage.SmallFile), "edge.bin"),
            new RenderFile(RandomFile(_dir, "empty.bin", 0), "empty.bin"),
        };
        var logs = new FakeLogCollector();
        using var loggerFactory = LoggerFactory.Create(b => b.AddProvider(new FakeLoggerProvider(logs)));
        var context = RenderContext.Create("other-workstation");
        await StageAsNewHostAsync(context, files, loggerFactory);

        // A data directory of its own: no ETag is cached, so each file is read and hashed, and none is sent again.
        await StageAsNewHostAsync(context, files, loggerFactory, _dir.Combine("other-data"));

        var staged = Staged(logs);
        Assert.Contains("3 uploaded", staged[0], StringComparison.Ordinal);
        Assert.Contains("0 uploaded (0 bytes), 3 already there", staged[^1], StringComparison.Ordinal);
        foreach (var file in files)
        {
            var bytes = await File.ReadAllBytesAsync(file.LocalPath);
            await ReadObjectAsync(fixture, "farmtests-resources", $"{context.Id}/{file.RelativePath}", bytes.Length, Sha256(bytes));
        }
    }

    [ComponentFact(Components.S3)]
    public async Task CopyRenderFiles_SendsAFileAgain_WhenItChangedWithTheSameSize()
    {
        var files = new[]
        {
            new RenderFile(RandomFile(_dir, "a.bin", 5_000), "a.bin"),
            new RenderFile(RandomFile(_dir, "b.bin", 5_000), "b.bin"),
        };
        var logs = new FakeLogCollector();
        using var loggerFactory = LoggerFactory.Create(b => b.AddProvider(new FakeLoggerProvider(logs)));
        var context = RenderContext.Create("changed");
        await StageAsNewHostAsync(context, files, loggerFactory);

        // Same path and size, other bytes, a later time: the cached ETag of the old bytes must not be used.
        var changed = new byte[5_000];
        Random.Shared.NextBytes(changed);
        await File.WriteAllBytesAsync(files[1].LocalPath, changed);
        File.SetLastWriteTimeUtc(files[1].LocalPath, DateTime.UtcNow.AddMinutes(1));

        await StageAsNewHostAsync(context, files, loggerFactory);

        var staged = Staged(logs);
        Assert.Contains("1 uploaded (5000 bytes), 1 already there", staged[^1], StringComparison.Ordinal);
        await ReadObjectAsync(fixture, "farmtests-resources", $"{context.Id}/b.bin", changed.Length, Sha256(changed));
    }

    [ComponentFact(Components.S3)]
    public async Task FailedTile_Restart_RunsOnlyThatInstanceAgain_ThenTheMerge()
    {
        var runs = _dir.Combine("runs.txt");
        var fixedFlag = _dir.Combine("fixed");
        await using var plugin = await fixture.NewPluginAsync();
        var (jobId, context, _) = await SubmitAsync(plugin,
        [
            Sh("tile0", $"echo tile0 >> '{runs}'; echo A > t0.txt", outputs: ["t0.txt"]),
            Sh("tile1", $"echo tile1 >> '{runs}'; test -e '{fixedFlag}' && echo B > t1.txt", outputs: ["t1.txt"]),
            Sh("merge", $"echo merge >> '{runs}'; cat t0.txt t1.txt > frame.txt", ["tile0", "tile1"], ["frame.txt"]),
        ]);

        var first = await WaitTerminalAsync(fixture, jobId);
        Assert.Equal(JobState.Failed, first.State);
        var tasks = await plugin.GetTasksAsync(jobId);
        Assert.Equal([JobState.Completed, JobState.Failed, JobState.Failed], tasks.Select(t => t.State));
        Assert.Equal(0, tasks[2].Attempts);

        await File.WriteAllTextAsync(fixedFlag, "yes");
        await (await fixture.NewPluginAsync()).RestartJobAsync(jobId);
        Assert.False((await plugin.GetJobAsync(jobId)).State.IsTerminal());
        var second = await WaitTerminalAsync(fixture, jobId);

        Assert.Equal(JobState.Completed, second.State);
        var lines = await File.ReadAllLinesAsync(runs);
        Assert.Equal(["tile0", "tile1"], lines[..2].Order());
        Assert.Equal(["tile1", "merge"], lines[2..]);
        var parts = fixture.Emulator.Tasks.Where(t => t.Tags.Contains(QarnotPlugin.ContextTag(context.Id))).ToList();
        Assert.Equal([[0, 1], [2], [1], [2]], parts.Select(p => p.Instances));
        var frame = await ReadObjectAsync(fixture, $"farmtests-results-{context.Id:N}", "frame.txt", 4, Sha256(Encoding.ASCII.GetBytes("A\nB\n")));
        Assert.Equal("A\nB\n", Encoding.ASCII.GetString(frame));
    }

    [ComponentFact(Components.S3)]
    public async Task FetchOutputs_DownloadsIdenticalBytes_OnlyWhenSomethingChanged()
    {
        await using var plugin = await fixture.NewPluginAsync();
        var (jobId, context, _) = await SubmitAsync(plugin,
            [Sh("write", "mkdir -p out && head -c 200000 /dev/urandom > out/a.bin && echo small > out/b.txt", outputs: ["out/a.bin", "out/b.txt"])]);
        Assert.Equal(JobState.Completed, (await WaitTerminalAsync(fixture, jobId)).State);
        var local = _dir.Combine("fetched");

        var written = await plugin.FetchOutputsAsync(jobId, local);

        Assert.Equal([Path.Combine(local, "out", "a.bin"), Path.Combine(local, "out", "b.txt")], written);
        var bytes = await File.ReadAllBytesAsync(Path.Combine(local, "out", "a.bin"));
        await ReadObjectAsync(fixture, $"farmtests-results-{context.Id:N}", "out/a.bin", bytes.Length, Sha256(bytes));
        Assert.Empty(await (await fixture.NewPluginAsync()).FetchOutputsAsync(jobId, local));
        File.Delete(Path.Combine(local, "out", "b.txt"));
        Assert.Equal([Path.Combine(local, "out", "b.txt")], await (await fixture.NewPluginAsync()).FetchOutputsAsync(jobId, local));
        Assert.Equal("small\n", await File.ReadAllTextAsync(Path.Combine(local, "out", "b.txt")));
    }

    [ComponentFact(Components.S3)]
    public async Task BurstOf503_IsRetriedWithBackOff_ThenSucceeds_AndAPersistentOneIsUnavailable()
    {
        await using var plugin = await fixture.NewPluginAsync();
        fixture.Emulator.FailNext(3, 503, "POST", "/tasks");
        var (jobId, _, _) = await SubmitAsync(plugin, [Sh("t", "echo ok")]);
        Assert.Equal(JobState.Completed, (await WaitTerminalAsync(fixture, jobId)).State);

        fixture.Emulator.FailNext(20, 503, "POST", "/tasks/paginate");
        var error = await Assert.ThrowsAsync<FarmUnavailableException>(() => plugin.GetJobAsync(jobId));
        Assert.Contains("failed 5 times", error.Message, StringComparison.Ordinal);
        fixture.Emulator.ClearFaults();
        Assert.Equal(JobState.Completed, (await plugin.GetJobAsync(jobId)).State);
    }

    [ComponentFact(Components.S3)]
    public async Task LostSubmitAnswer_TheRetryFindsTheTask_AndCreatesNoSecond()
    {
        await using var plugin = await fixture.NewPluginAsync();
        var calls = fixture.Emulator.SubmitCalls;
        fixture.Emulator.LoseNextSubmitAnswer();

        var (jobId, context, _) = await SubmitAsync(plugin, [Sh("t", $"echo run >> '{_dir.Combine("runs.txt")}'")]);

        Assert.Equal(JobState.Completed, (await WaitTerminalAsync(fixture, jobId)).State);
        Assert.Single(fixture.Emulator.Tasks, t => t.Tags.Contains(QarnotPlugin.ContextTag(context.Id)));
        Assert.Equal(calls + 1, fixture.Emulator.SubmitCalls);
        Assert.Single(await File.ReadAllLinesAsync(_dir.Combine("runs.txt")));
    }

    [ComponentFact(Components.S3)]
    public async Task RefusedToken_IsAnAuthenticationError_ThatNeverShowsTheToken()
    {
        var wrong = "wrong-" + Guid.NewGuid().ToString("N");
        var refused = await Assert.ThrowsAsync<FarmAuthenticationException>(() => fixture.NewPluginAsync(configure: s => s["Token"] = wrong));
        Assert.Contains("the Qarnot token was refused", refused.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(wrong, refused.ToString(), StringComparison.Ordinal);

        // The raw token is the header; "Bearer <token>" is refused like any wrong token.
        var bearer = await Assert.ThrowsAsync<FarmAuthenticationException>(() => fixture.NewPluginAsync(configure: s => s["Token"] = "Bearer" + fixture.Token));
        Assert.DoesNotContain(fixture.Token, bearer.ToString(), StringComparison.Ordinal);
        using var http = new HttpClient { BaseAddress = fixture.Emulator.Url };
        http.DefaultRequestHeaders.TryAddWithoutValidation("Authorization", "Bearer " + fixture.Token);
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("info")).StatusCode);
    }

    [ComponentFact(Components.S3)]
    public async Task Quota_Credits_AndUnknownProfile_AreClearErrors_AndTestAsyncReportsThem()
    {
        await using var plugin = await fixture.NewPluginAsync();
        var report = await plugin.TestAsync();
        Assert.True(report.Passed, string.Join("; ", report.Checks.Select(c => $"{c.Name}: {c.Detail}")));
        Assert.Equal(["token accepted", "storage reachable", "profile exists", "quota left"], report.Checks.Select(c => c.Name));

        fixture.Emulator.OutOfCredits = true;
        try
        {
            await Assert.ThrowsAsync<FarmQuotaException>(() => SubmitAsync(plugin, [Sh("t", "true")]));
        }
        finally
        {
            fixture.Emulator.OutOfCredits = false;
        }

        var limit = fixture.Emulator.MaxTask;
        var (sleeper, _, _) = await SubmitAsync(plugin, [Sh("sleep", "sleep 30")]);
        fixture.Emulator.MaxTask = fixture.Emulator.Tasks.Count(t => !t.IsTerminal);
        try
        {
            var quota = await Assert.ThrowsAsync<FarmQuotaException>(() => SubmitAsync(plugin, [Sh("t", "true")]));
            Assert.Contains("Maximum number of tasks", quota.Message, StringComparison.Ordinal);
            Assert.False((await plugin.TestAsync()).Checks.Single(c => c.Name == "quota left").Passed);
        }
        finally
        {
            fixture.Emulator.MaxTask = limit;
            await plugin.StopJobAsync(sleeper);
        }

        await using var wrongProfile = await fixture.NewPluginAsync(configure: s => s["Profile"] = "no-such-profile");
        var notFound = await Assert.ThrowsAsync<FarmPluginException>(() => SubmitAsync(wrongProfile, [Sh("t", "true")]));
        Assert.Contains("no-such-profile", notFound.Message, StringComparison.Ordinal);
        Assert.False((await wrongProfile.TestAsync()).Checks.Single(c => c.Name == "profile exists").Passed);
    }

    [ComponentFact(Components.S3)]
    public async Task RestartedHost_ReadsTheWholeLog_ThatQarnotHandsOutOnlyOnce()
    {
        var first = await fixture.NewPluginAsync(_dir.Combine("host"));
        var (jobId, _, _) = await SubmitAsync(first, [Sh("count", "i=1; while [ $i -le 30 ]; do echo \"count $i\"; i=$((i+1)); sleep 0.03; done; echo oops >&2")]);
        await Eventually.WaitAsync(async () => (await first.ReadRenderLogAsync(jobId, 0)).Text.Contains("count 3\n", StringComparison.Ordinal),
            Generous, "the first lines");
        await first.DisposeAsync();
        await WaitTerminalAsync(fixture, jobId);

        await using var restarted = await fixture.NewPluginAsync(_dir.Combine("host"));
        var log = await restarted.ReadRenderLogAsync(jobId, 0);

        Assert.True(log.IsComplete);
        var lines = log.Text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal([.. Enumerable.Range(1, 30).Select(i => $"count {i}"), "oops"], lines);
        // Qarnot's fresh output was drained by this workstation: another one starts from what is new.
        await using var elsewhere = await fixture.NewPluginAsync(_dir.Combine("other-workstation"));
        Assert.Equal(string.Empty, (await elsewhere.ReadRenderLogAsync(jobId, 0)).Text);
    }

    [ComponentFact(Components.S3)]
    public async Task Delete_RemovesTheTasks_TheStagedFiles_AndTheResults()
    {
        await using var plugin = await fixture.NewPluginAsync();
        var (jobId, context, folder) = await SubmitAsync(plugin, [Sh("t", "echo out > out.txt", outputs: ["out.txt"])]);
        await WaitTerminalAsync(fixture, jobId);

        await plugin.DeleteJobAsync(jobId);

        await Assert.ThrowsAsync<JobNotFoundException>(() => plugin.GetJobAsync(jobId));
        Assert.DoesNotContain(fixture.Emulator.Tasks, t => t.Tags.Contains(QarnotPlugin.ContextTag(context.Id)));
        var left = await fixture.Emulator.S3.ListObjectsV2Async(new ListObjectsV2Request { BucketName = "farmtests-resources", Prefix = $"{context.Id}/" });
        Assert.Empty(left.S3Objects ?? []);
        var buckets = await fixture.Emulator.S3.ListBucketsAsync();
        Assert.DoesNotContain(buckets.Buckets ?? [], b => b.BucketName == $"farmtests-results-{context.Id:N}");
        Assert.StartsWith("s3://", folder, StringComparison.Ordinal);
    }

    [ComponentFact(Components.S3)]
    public async Task LevelsLargerThanMaxInstances_AreSplit_AndTheMergeWaitsForEveryPart()
    {
        await using var plugin = await fixture.NewPluginAsync(configure: s => s["MaxInstances"] = "2");
        var tiles = Enumerable.Range(0, 5).Select(i => Sh($"tile{i}", $"sleep 0.{i}; echo {i} > t{i}.txt", outputs: [$"t{i}.txt"])).ToList();
        var merge = Sh("merge", "cat t0.txt t1.txt t2.txt t3.txt t4.txt > all.txt", [.. tiles.Select(t => t.Id)], ["all.txt"]);
        var (jobId, context, _) = await SubmitAsync(plugin, [.. tiles, merge]);

        Assert.Equal(JobState.Completed, (await WaitTerminalAsync(fixture, jobId)).State);
        var parts = fixture.Emulator.Tasks.Where(t => t.Tags.Contains(QarnotPlugin.ContextTag(context.Id))).ToList();
        Assert.Equal([[0, 1], [2, 3], [4], [5]], parts.Select(p => p.Instances));
        Assert.Equal(3, parts[3].DependsOn.Count);
        var expected = Encoding.ASCII.GetBytes("0\n1\n2\n3\n4\n");
        await ReadObjectAsync(fixture, $"farmtests-results-{context.Id:N}", "all.txt", expected.Length, Sha256(expected));
    }

    [ComponentFact(Components.S3)]
    public async Task TaskTimeout_KillsTheInstance_AndFailsTheTask()
    {
        await using var plugin = await fixture.NewPluginAsync();
        var context = RenderContext.Create("timeout");
        var folder = await plugin.CreateTemporaryFolderAsync(context);
        var jobId = await plugin.SubmitJobAsync(new JobRequest
        {
            Context = context,
            Name = "timeout",
            TemporaryFolder = folder,
            MaxAttempts = 1,
            Tasks = [new TaskSpec("slow", [Command.Of("/bin/sh", "-c", "sleep 30")], Timeout: TimeSpan.FromSeconds(1))],
        });

        var job = await WaitTerminalAsync(fixture, jobId);

        Assert.Equal(JobState.Failed, job.State);
        Assert.True(job.CompletedAt - job.SubmittedAt < TimeSpan.FromSeconds(20), $"ended {job.CompletedAt - job.SubmittedAt} after submission");
        Assert.Equal(124, (await plugin.GetTasksAsync(jobId)).Single().ExitCode);
        Assert.Contains("timed out", (await plugin.ReadRenderLogAsync(jobId, 0)).Text, StringComparison.Ordinal);
    }

    [ComponentFact(Components.S3)]
    public async Task Emulator_IsStrictWhereQarnotIs()
    {
        using var http = new HttpClient { BaseAddress = fixture.Emulator.Url };
        http.DefaultRequestHeaders.TryAddWithoutValidation("Authorization", fixture.Token);
        var both = await http.PostAsync("tasks", new StringContent(
            """{"name":"x","profile":"docker-batch","instanceCount":2,"advancedRanges":"0-1"}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, both.StatusCode);
        Assert.Equal("application/problem+json", both.Content.Headers.ContentType?.MediaType);
        var profile = await http.PostAsync("tasks", new StringContent(
            """{"name":"x","profile":"nope","instanceCount":1}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.NotFound, profile.StatusCode);
        Assert.Empty(fixture.Emulator.Faults);
    }

    private sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}

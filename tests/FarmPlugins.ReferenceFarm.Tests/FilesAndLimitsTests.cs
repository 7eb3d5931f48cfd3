using System.Diagnostics;
using FarmApi;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using ReferenceFarm.Protocol;
using Xunit;

namespace FarmPlugins.ReferenceFarm.Tests;

public sealed class FilesAndLimitsTests
{
    private static readonly TimeSpan Long = TimeSpan.FromSeconds(90);

    [Fact]
    public async Task The_same_200_file_scene_submitted_twice_uploads_its_bytes_once()
    {
        await using var farm = new FarmCluster();
        await farm.StartServerAsync();
        farm.StartAgent("a", "command");
        var plugin = await farm.CreatePluginAsync();
        var files = Enumerable.Range(0, 200)
            .Select(i => new RenderFile(farm.Temp.WriteFile($"scene/tex/f{i:000}.txt", $"texture {i}\n" + new string('x', 1000 + i)), $"tex/f{i:000}.txt"))
            .ToList();

        async Task<(string JobId, List<TransferProgress> Reports)> SubmitAsync()
        {
            var context = new RenderContext(Guid.NewGuid(), RenderType.Disk, "scene");
            var folder = await plugin.CreateTemporaryFolderAsync(context);
            var reports = new List<TransferProgress>();
            var progress = new SynchronousProgress(reports);
            await plugin.CopyRenderFilesAsync(context, folder, files, progress);
            var jobId = await plugin.SubmitJobAsync(new JobRequest
            {
                Context = context, Name = "scene", TemporaryFolder = folder, Files = files.Select(f => f.RelativePath).ToList(),
                Tasks = [Jobs.Shell("t", "cat tex/f000.txt tex/f199.txt | wc -c > count.txt", outputs: ["count.txt"])],
            });
            return (jobId, reports);
        }

        var (first, firstReports) = await SubmitAsync();
        var total = files.Sum(f => new FileInfo(f.LocalPath).Length);
        Assert.Equal(total, firstReports[^1].BytesTotal);
        Assert.Equal(total, firstReports[^1].BytesDone);
        Assert.Equal(0, firstReports[0].BytesDone);
        Assert.Contains(firstReports, r => r.CurrentFile == "tex/f150.txt");

        var (second, secondReports) = await SubmitAsync();
        // Nothing to send: the first report already has every byte done and no file is transferred.
        Assert.All(secondReports, r => Assert.Equal(total, r.BytesDone));
        Assert.All(secondReports, r => Assert.Null(r.CurrentFile));
        Assert.Equal(200, Directory.GetFiles(Path.Combine(farm.DataDirectory, "blobs"), "*", SearchOption.AllDirectories).Length);

        foreach (var jobId in new[] { first, second })
        {
            Assert.Equal(JobState.Completed, (await Jobs.WaitTerminalAsync(plugin, jobId, Long)).State);
            var fetched = farm.Temp.Combine("out-" + jobId);
            await plugin.FetchOutputsAsync(jobId, fetched);
            Assert.Equal((2 * 1000 + 199 + "texture 0\n".Length + "texture 199\n".Length).ToString(), File.ReadAllText(Path.Combine(fetched, "count.txt")).Trim());
        }
    }

    [Fact]
    public async Task Deleting_a_job_removes_its_blobs_unless_another_job_shares_them()
    {
        await using var farm = new FarmCluster();
        await farm.StartServerAsync("--blob-grace-ms", "1");
        farm.StartAgent("a", "command");
        var plugin = await farm.CreatePluginAsync();
        var shared = farm.Temp.WriteFile("scene/shared.txt", "shared texture\n");
        var onlyFirst = farm.Temp.WriteFile("scene/first.txt", "first only\n");
        var first = await plugin.SubmitJobAsync(await Jobs.RequestAsync(plugin, "first",
            [Jobs.Shell("t", "cat shared.txt first.txt > out-first.txt", outputs: ["out-first.txt"])],
            [new RenderFile(shared, "shared.txt"), new RenderFile(onlyFirst, "first.txt")]));
        var second = await plugin.SubmitJobAsync(await Jobs.RequestAsync(plugin, "second",
            [Jobs.Shell("t", "cat shared.txt > out-second.txt; echo second >> out-second.txt", outputs: ["out-second.txt"])],
            [new RenderFile(shared, "shared.txt")]));
        Assert.Equal(JobState.Completed, (await Jobs.WaitTerminalAsync(plugin, first, Long)).State);
        Assert.Equal(JobState.Completed, (await Jobs.WaitTerminalAsync(plugin, second, Long)).State);
        string[] Blobs() => Directory.GetFiles(Path.Combine(farm.DataDirectory, "blobs"), "*", SearchOption.AllDirectories).Select(Path.GetFileName).ToArray()!;
        Assert.Equal(4, Blobs().Length);

        await plugin.DeleteJobAsync(first);
        var left = Blobs();
        Assert.Equal(2, left.Length);
        Assert.Contains(FarmApi.Hashing.ContentHash.Compute(File.ReadAllBytes(shared)), left);
        var fetched = farm.Temp.Combine("fetched");
        Assert.Single(await plugin.FetchOutputsAsync(second, fetched));
        Assert.Equal("shared texture\nsecond\n", File.ReadAllText(Path.Combine(fetched, "out-second.txt")));

        await plugin.DeleteJobAsync(second);
        Assert.Empty(Blobs());
    }

    [Fact]
    public async Task Bad_grpc_requests_get_clear_status_codes_and_the_server_stays_up()
    {
        await using var farm = new FarmCluster();
        await farm.StartServerAsync();
        using var channel = GrpcChannel.ForAddress(farm.Address, new GrpcChannelOptions { MaxSendMessageSize = null, MaxReceiveMessageSize = null });
        var jobs = new global::ReferenceFarm.Protocol.Jobs.JobsClient(channel);
        var blobs = new Blobs.BlobsClient(channel);
        var auth = FarmChannel.Bearer(farm.AdminToken);

        async Task<RpcException> Refused(Func<Task> call) => await Assert.ThrowsAsync<RpcException>(call);

        var huge = new SubmitRequest { ContextId = Guid.NewGuid().ToString(), Name = new string('n', 70 * 1024 * 1024), Priority = 50, MaxAttempts = 1 };
        Assert.Equal(StatusCode.ResourceExhausted, (await Refused(() => jobs.SubmitAsync(huge, auth).ResponseAsync)).StatusCode);

        Assert.Equal(StatusCode.NotFound, (await Refused(() => jobs.GetJobAsync(new JobIdRequest { JobId = "rf-nope" }, auth).ResponseAsync)).StatusCode);
        Assert.Equal(StatusCode.NotFound, (await Refused(() => jobs.StopJobAsync(new JobIdRequest { JobId = "rf-nope" }, auth).ResponseAsync)).StatusCode);
        var negative = await Refused(() => jobs.ReadLogAsync(new ReadLogRequest { JobId = "rf-nope", Offset = -5 }, auth).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, negative.StatusCode);
        Assert.Contains("offset", negative.Status.Detail);

        var escaping = new SubmitRequest { ContextId = Guid.NewGuid().ToString(), Name = "bad", Priority = 50, MaxAttempts = 1 };
        escaping.Tasks.Add(new global::ReferenceFarm.Protocol.TaskSpec { Id = "t", Host = "command", Outputs = { "../../etc/passwd" }, Commands = { new global::ReferenceFarm.Protocol.Command { Executable = "true" } } });
        var escape = await Refused(() => jobs.SubmitAsync(escaping, auth).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, escape.StatusCode);
        Assert.Contains("Outputs", escape.Status.Detail);
        Assert.Equal(StatusCode.InvalidArgument, (await Refused(() => jobs.SubmitAsync(new SubmitRequest { ContextId = "not-a-uuid" }, auth).ResponseAsync)).StatusCode);

        using (var upload = blobs.Upload(auth))
        {
            await upload.RequestStream.WriteAsync(new BlobChunk { Hash = new string('a', 64), Data = ByteString.CopyFromUtf8("not what the hash says") });
            await upload.RequestStream.CompleteAsync();
            var mismatch = await Refused(() => upload.ResponseAsync);
            Assert.Equal(StatusCode.DataLoss, mismatch.StatusCode);
        }

        Assert.Empty(Directory.GetFiles(Path.Combine(farm.DataDirectory, "blobs"), "*", SearchOption.AllDirectories));
        var badHash = await Refused(() => blobs.FindMissingAsync(new FindMissingRequest { Hashes = { "../../x" } }, auth).ResponseAsync);
        Assert.Equal(StatusCode.InvalidArgument, badHash.StatusCode);
        Assert.Equal(StatusCode.NotFound, (await Refused(async () =>
        {
            using var call = blobs.Download(new DownloadRequest { Hash = "../x" }, auth);
            await call.ResponseStream.MoveNext(CancellationToken.None);
        })).StatusCode);

        var ping = await jobs.PingAsync(new PingRequest(), auth);
        Assert.Equal("admin", ping.Caller);
        Assert.False(farm.Server!.Process.HasExited);
    }

    [Fact]
    public async Task A_10000_task_request_and_a_100000_task_listing_work()
    {
        await using var farm = new FarmCluster();
        await farm.StartServerAsync();
        var plugin = await farm.CreatePluginAsync();
        // Host "nowhere" keeps the tasks queued: no agent runs them.
        var tenThousand = Enumerable.Range(0, 10_000).Select(i => Jobs.Shell($"f{i:00000}", $"echo frame {i}", host: "nowhere")).ToList();
        var watch = Stopwatch.StartNew();
        var jobId = await plugin.SubmitJobAsync(await Jobs.RequestAsync(plugin, "ten thousand", tenThousand));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), $"10,000-task submit took {watch.Elapsed}");
        Assert.Equal(10_000, (await plugin.GetJobAsync(jobId)).Progress.TotalTasks);

        var hundredThousand = Enumerable.Range(0, 100_000).Select(i => Jobs.Shell($"f{i:000000}", "true", host: "nowhere")).ToList();
        var bigId = await plugin.SubmitJobAsync(await Jobs.RequestAsync(plugin, "hundred thousand", hundredThousand));
        var tasks = await plugin.GetTasksAsync(bigId);
        Assert.Equal(100_000, tasks.Count);
        Assert.Equal("f099999", tasks[^1].Id);
        Assert.All(tasks.Take(10), t => Assert.Equal(JobState.Waiting, t.State));
        var listed = await plugin.GetJobsAsync();
        Assert.Equal(2, listed.Count);
        Assert.Equal(100_000, listed[0].Progress.TotalTasks);
    }

    private sealed class SynchronousProgress(List<TransferProgress> reports) : IProgress<TransferProgress>
    {
        public void Report(TransferProgress value)
        {
            lock (reports)
            {
                reports.Add(value);
            }
        }
    }
}

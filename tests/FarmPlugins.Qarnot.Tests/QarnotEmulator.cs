using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace FarmPlugins.Qarnot.Tests;

/// <summary>
/// An emulator of Qarnot's compute API written from <c>qarnot-protocol.md</c>, with its own types (nothing shared with
/// the adapter). A real HTTP server on 127.0.0.1. Strict where Qarnot is strict (the raw token, never <c>Bearer</c>;
/// exactly one of <c>instanceCount</c>/<c>advancedRanges</c>; unknown profile or bucket → 404); lenient where Qarnot's
/// answers vary (camelCase and PascalCase answers with unknown fields, <c>endDate</c> 0001-01-01 when unset, the three
/// error body shapes, pages of 2). Each instance runs <c>DOCKER_CMD</c> as a local process with <c>INSTANCE_ID</c> set,
/// in a <c>/job</c>-like folder filled from the real S3 server; what it writes is uploaded to the result bucket.
/// </summary>
public sealed class QarnotEmulator : IAsyncDisposable
{
    private static readonly string[] Profiles = ["docker-batch", "blender"];
    private readonly ConcurrentDictionary<string, EmulatedTask> _tasks = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<Fault> _faults = new();
    private readonly AmazonS3Client _s3;
    private readonly string _nodeRoot;
    private readonly SemaphoreSlim _slots;
    private readonly CancellationTokenSource _stopping = new();
    private WebApplication? _app;
    private Task? _scheduler;
    private long _sequence;
    private int _responses;
    private int _errors;
    private int _submitCalls;

    public QarnotEmulator(Uri storage, string token, string email, string nodeRoot, int slots = 4)
    {
        Storage = storage;
        Token = token;
        Email = email;
        _nodeRoot = nodeRoot;
        _slots = new SemaphoreSlim(slots);
        _s3 = new AmazonS3Client(new BasicAWSCredentials("S3RVER", "S3RVER"), new AmazonS3Config
        {
            ServiceURL = storage.AbsoluteUri,
            ForcePathStyle = true,
            AuthenticationRegion = "us-east-1",
            RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED,
            ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
        });
    }

    public Uri Url { get; private set; } = null!;

    public Uri Storage { get; }

    public string Token { get; }

    public string Email { get; }

    /// <summary>The account's task quota (non-terminal tasks); a submit past it is refused with 403.</summary>
    public int MaxTask { get; set; } = 10_000;

    /// <summary>When set, submits are refused with 402 (not enough credits).</summary>
    public bool OutOfCredits { get; set; }

    /// <summary>POST /tasks calls that reached the task store (accepted or not).</summary>
    public int SubmitCalls => Volatile.Read(ref _submitCalls);

    public AmazonS3Client S3 => _s3;

    public IReadOnlyList<EmulatedTask> Tasks => [.. _tasks.Values.OrderBy(t => t.Sequence)];

    /// <summary>The next <paramref name="count"/> requests matching answer <paramref name="status"/> without being handled.</summary>
    public void FailNext(int count, int status, string? method = null, string? path = null)
    {
        for (var i = 0; i < count; i++)
        {
            _faults.Enqueue(new Fault(status, method, path, LoseAnswer: false));
        }
    }

    /// <summary>The next POST /tasks creates its task, then the connection is dropped before the answer.</summary>
    public void LoseNextSubmitAnswer() => _faults.Enqueue(new Fault(0, "POST", "/tasks", LoseAnswer: true));

    public void ClearFaults() => _faults.Clear();

    public async Task StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0));
        var app = builder.Build();
        app.Use(GateAsync);
        app.MapGet("/settings", () => Json(new JsonObject { ["storage"] = Storage.AbsoluteUri.TrimEnd('/') }));
        app.MapGet("/info", () => Json(new JsonObject
        {
            ["email"] = Email,
            ["maxTask"] = MaxTask,
            ["runningTaskCount"] = _tasks.Values.Count(t => !t.IsTerminal),
            ["maxInstances"] = 64,
            ["maxBucket"] = 100,
            ["quotaBytesBucket"] = 10L << 30,
            ["usedQuotaBytesBucket"] = 0,
            ["maxRunningTask"] = MaxTask,
        }));
        app.MapGet("/profiles", () => Json(new JsonArray([.. Profiles.Select(p => (JsonNode)JsonValue.Create(p))])));
        app.MapGet("/profiles/{name}", (string name) => Profiles.Contains(name)
            ? Json(new JsonObject { ["name"] = name, ["constants"] = ProfileConstants(name) })
            : Error(404, $"Profile '{name}' not found."));
        app.MapPost("/tasks", (Delegate)SubmitAsync);
        app.MapPost("/tasks/paginate", (Delegate)PaginateAsync);
        app.MapGet("/tasks/{uuid}", (string uuid) => _tasks.TryGetValue(uuid, out var task) ? Json(task.ToJson()) : Error(404, "Task not found."));
        app.MapDelete("/tasks/{uuid}", (string uuid) =>
        {
            if (!_tasks.TryRemove(uuid, out var task))
            {
                return Error(404, "Task not found.");
            }

            task.Abort();
            return Results.Ok();
        });
        app.MapPost("/tasks/{uuid}/abort", (string uuid) =>
        {
            if (!_tasks.TryGetValue(uuid, out var task))
            {
                return Error(404, "Task not found.");
            }

            task.Abort();
            return Results.Ok();
        });
        app.MapMethods("/tasks/{uuid}/{stream}", ["GET", "POST"], (HttpContext context, string uuid, string stream) => Output(context, uuid, stream, null));
        app.MapMethods("/tasks/{uuid}/{stream}/{instance:int}", ["GET", "POST"], (HttpContext context, string uuid, string stream, int instance) => Output(context, uuid, stream, instance));
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        Url = new Uri(address.Replace("[::]", "127.0.0.1", StringComparison.Ordinal));
        _app = app;
        _scheduler = Task.Run(ScheduleAsync);
    }

    private async Task GateAsync(HttpContext context, RequestDelegate next)
    {
        if (_faults.TryPeek(out var fault) && fault.Matches(context.Request) && _faults.TryDequeue(out fault))
        {
            if (fault.LoseAnswer)
            {
                await next(context);
                context.Abort();
                return;
            }

            await Error(fault.Status, "Service temporarily unavailable (injected).").ExecuteAsync(context);
            return;
        }

        // Qarnot takes the raw token: "Bearer <token>" is refused like a wrong token.
        if (!context.Request.Headers.TryGetValue("Authorization", out var authorization) || authorization.Count != 1 || authorization[0] != Token)
        {
            await Error(401, "Unauthorized: invalid or missing token.").ExecuteAsync(context);
            return;
        }

        try
        {
            await next(context);
        }
        catch (Exception ex) when (!context.Response.HasStarted)
        {
            // A bug of the emulator must show in the failing test, not as an anonymous 500.
            Faults.Add(ex.ToString());
            context.Response.StatusCode = 500;
            await context.Response.WriteAsync(new JsonObject { ["message"] = "emulator: " + ex.GetType().Name + ": " + ex.Message }.ToJsonString());
        }
    }

    /// <summary>Exceptions the emulator's handlers threw (its own bugs).</summary>
    public ConcurrentBag<string> Faults { get; } = [];

    private async Task<IResult> SubmitAsync(HttpRequest request)
    {
        Interlocked.Increment(ref _submitCalls);
        JsonObject body;
        try
        {
            body = await JsonNode.ParseAsync(request.Body) as JsonObject ?? throw new JsonException("not an object");
        }
        catch (JsonException ex)
        {
            return Problem("The request body is not a task object.", new() { ["body"] = ex.Message });
        }

        var name = Text(body, "name");
        var profile = Text(body, "profile");
        var hasCount = Field(body, "instanceCount") is not null;
        var ranges = Text(body, "advancedRanges");
        if (string.IsNullOrEmpty(name))
        {
            return Problem("One or more validation errors occurred.", new() { ["Name"] = "The Name field is required." });
        }

        if (hasCount == (ranges is not null))
        {
            return Problem("One or more validation errors occurred.",
                new() { ["InstanceCount"] = "Exactly one of InstanceCount and AdvancedRanges must be given." });
        }

        if (profile is null || !Profiles.Contains(profile))
        {
            return Error(404, $"Profile '{profile}' not found.");
        }

        List<int> instances;
        if (hasCount)
        {
            var count = Field(body, "instanceCount")!.GetValue<int>();
            if (count < 1)
            {
                return Problem("One or more validation errors occurred.", new() { ["InstanceCount"] = "Must be at least 1." });
            }

            instances = [.. Enumerable.Range(0, count)];
        }
        else if (!TryParseRanges(ranges!, out instances))
        {
            return Problem("One or more validation errors occurred.", new() { ["AdvancedRanges"] = $"'{ranges}' is not a range list." });
        }

        var constants = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var item in Field(body, "constants") as JsonArray ?? [])
        {
            if (item is not JsonObject constant || Text(constant, "key") is not { } key)
            {
                return Problem("One or more validation errors occurred.", new() { ["Constants"] = "Each constant is {key, value}." });
            }

            constants[key] = Text(constant, "value") ?? string.Empty;
        }

        var resources = new List<(string Bucket, string Prefix, string Strip)>();
        foreach (var item in Field(body, "advancedResourceBuckets") as JsonArray ?? [])
        {
            var bucket = Text(item!.AsObject(), "bucketName") ?? string.Empty;
            var prefix = Field(Field(Field(item.AsObject(), "filtering")?.AsObject(), "prefixFiltering")?.AsObject(), "prefix")?.GetValue<string>() ?? string.Empty;
            var strip = Field(Field(Field(item.AsObject(), "resourcesTransformation")?.AsObject(), "stripPrefix")?.AsObject(), "prefix")?.GetValue<string>() ?? string.Empty;
            resources.Add((bucket, prefix, strip));
        }

        var resultBucket = Text(body, "resultBucket");
        foreach (var bucket in resources.Select(r => r.Bucket).Append(resultBucket).OfType<string>().Distinct())
        {
            if (!await BucketExistsAsync(bucket))
            {
                return Error(404, $"Bucket '{bucket}' not found.");
            }
        }

        var dependsOn = (Field(Field(body, "dependencies")?.AsObject(), "dependsOn") as JsonArray ?? []).Select(d => d!.GetValue<string>()).ToList();
        if (dependsOn.FirstOrDefault(d => !_tasks.ContainsKey(d)) is { } unknown)
        {
            return Error(404, $"Dependency task '{unknown}' not found.");
        }

        if (OutOfCredits)
        {
            return Error(402, "Not enough credits to submit the task.");
        }

        if (_tasks.Values.Count(t => !t.IsTerminal) >= MaxTask)
        {
            return Error(403, "Maximum number of tasks reached.");
        }

        var retries = Field(Field(body, "retrySettings")?.AsObject(), "maxPerInstanceRetries")?.GetValue<int>() ?? 0;
        var task = new EmulatedTask(this, Guid.NewGuid().ToString("D"), Interlocked.Increment(ref _sequence), body, name, profile, instances, constants,
            resources, resultBucket, dependsOn, retries,
            [.. (Field(body, "tags") as JsonArray ?? []).Select(t => t!.GetValue<string>())],
            (Field(body, "labels") as JsonObject ?? []).ToDictionary(p => p.Key, p => p.Value?.GetValue<string>() ?? string.Empty));
        _tasks[task.Uuid] = task;
        return Json(new JsonObject { ["uuid"] = task.Uuid }, 201);
    }

    private async Task<IResult> PaginateAsync(HttpRequest request)
    {
        var body = await JsonNode.ParseAsync(request.Body) as JsonObject ?? [];
        var filter = Field(body, "filter") as JsonObject;
        var offset = int.TryParse(Text(body, "token"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var o) ? o : 0;
        var maximum = Field(body, "maximumResults")?.GetValue<int>() ?? 2;
        // Pages of 2 at most, whatever is asked: pagination must be followed.
        var size = Math.Clamp(maximum, 1, 2);
        List<EmulatedTask> matching;
        try
        {
            matching = [.. Tasks.Where(t => filter is null || Matches(filter, t))];
        }
        catch (InvalidOperationException ex)
        {
            return Problem("The filter is invalid.", new() { ["Filter"] = ex.Message });
        }

        var page = matching.Skip(offset).Take(size).ToList();
        var truncated = offset + page.Count < matching.Count;
        return Json(new JsonObject
        {
            ["data"] = new JsonArray([.. page.Select(t => (JsonNode)t.ToJson())]),
            ["token"] = offset.ToString(CultureInfo.InvariantCulture),
            ["nextToken"] = truncated ? (offset + page.Count).ToString(CultureInfo.InvariantCulture) : null,
            ["isTruncated"] = truncated,
        });
    }

    private static bool Matches(JsonObject filter, EmulatedTask task)
    {
        var op = Text(filter, "operator") ?? throw new InvalidOperationException("a filter has no operator");
        if (op is "And" or "Or")
        {
            var children = (Field(filter, "filters") as JsonArray ?? []).Select(f => Matches(f!.AsObject(), task));
            return op == "And" ? children.All(x => x) : children.Any(x => x);
        }

        var field = Text(filter, "field") ?? throw new InvalidOperationException("a filter leaf has no field");
        var value = Field(filter, "value");
        IEnumerable<string> actual = field.ToUpperInvariant() switch
        {
            "TAGS" => task.Tags,
            "STATE" => [task.State],
            "NAME" => [task.Name],
            "UUID" => [task.Uuid],
            _ => throw new InvalidOperationException($"unknown filter field '{field}'"),
        };
        var wanted = value is JsonArray array ? array.Select(v => v!.GetValue<string>()).ToList() : [value?.GetValue<string>() ?? string.Empty];
        return op switch
        {
            "Equal" => actual.Contains(wanted[0], StringComparer.Ordinal),
            "NotEqual" => !actual.Contains(wanted[0], StringComparer.Ordinal),
            "In" => actual.Any(a => wanted.Contains(a, StringComparer.Ordinal)),
            _ => throw new InvalidOperationException($"unknown operator '{op}'"),
        };
    }

    private IResult Output(HttpContext context, string uuid, string stream, int? instance)
    {
        if (stream is not ("stdout" or "stderr"))
        {
            return Error(404, "Not found.");
        }

        if (!_tasks.TryGetValue(uuid, out var task))
        {
            return Error(404, "Task not found.");
        }

        var fresh = HttpMethods.IsPost(context.Request.Method);
        return Results.Text(task.ReadOutput(stream == "stderr", instance, fresh), "text/plain", Encoding.UTF8);
    }

    private async Task ScheduleAsync()
    {
        while (!_stopping.IsCancellationRequested)
        {
            foreach (var task in Tasks.Where(t => t.State == "Submitted"))
            {
                // A dependency that was deleted no longer holds anything back; one that failed or was cancelled does, forever.
                if (task.DependsOn.All(d => !_tasks.TryGetValue(d, out var dependency) || dependency.State == "Success"))
                {
                    task.Start();
                }
            }

            try
            {
                await Task.Delay(30, _stopping.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    internal async Task<int> RunInstanceAsync(EmulatedTask task, int instanceId, int attempt, CancellationToken abort)
    {
        await _slots.WaitAsync(abort);
        var folder = Path.Combine(_nodeRoot, task.Uuid, $"{instanceId}-{attempt}", "job");
        try
        {
            Directory.CreateDirectory(folder);
            var downloaded = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var (bucket, prefix, strip) in task.Resources)
            {
                foreach (var (key, etag, size) in await ListKeysAsync(bucket, prefix))
                {
                    var relative = key.StartsWith(strip, StringComparison.Ordinal) ? key[strip.Length..] : key;
                    if (relative.Length == 0 || relative.EndsWith('/') || relative.Split('/').Contains(".."))
                    {
                        continue;
                    }

                    var target = Path.Combine(folder, relative);
                    Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                    using (var response = await _s3.GetObjectAsync(bucket, key, abort))
                    await using (var file = File.Create(target))
                    {
                        await response.ResponseStream.CopyToAsync(file, abort);
                    }

                    // S3 failures are silent: every object arrives with the length and (single-part) MD5 the listing gave.
                    var md5 = await Md5Async(target);
                    var length = new FileInfo(target).Length;
                    if (length != size || (!etag.Contains('-', StringComparison.Ordinal) && etag != md5))
                    {
                        throw new InvalidDataException($"s3://{bucket}/{key} arrived with {length} bytes and MD5 {md5}, not {size} bytes and ETag {etag}");
                    }

                    downloaded[relative] = md5;
                }
            }

            if (!task.Constants.TryGetValue("DOCKER_CMD", out var command) || task.Profile != "docker-batch")
            {
                task.Append(instanceId, true, task.Profile != "docker-batch" ? $"profile {task.Profile} is not emulated\n" : "DOCKER_CMD is not set\n");
                return 127;
            }

            var info = new ProcessStartInfo("setsid", ["/bin/sh", "-c", command])
            {
                WorkingDirectory = folder,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                RedirectStandardInput = true,
                UseShellExecute = false,
                StandardOutputEncoding = Encoding.UTF8,
                StandardErrorEncoding = Encoding.UTF8,
            };
            foreach (var (key, value) in task.Constants)
            {
                info.Environment[key] = value;
            }

            info.Environment["INSTANCE_ID"] = instanceId.ToString(CultureInfo.InvariantCulture);
            info.Environment["QARNOT_RESOURCES_DIRECTORY"] = folder;
            info.Environment["QARNOT_RESULTS_DIRECTORY"] = folder;
            using var process = Process.Start(info)!;
            process.StandardInput.Close();
            task.SetRunning(instanceId, true);
            using var kill = abort.Register(() => KillGroup(process.Id));
            var stdout = PumpAsync(process.StandardOutput, text => task.Append(instanceId, false, text));
            var stderr = PumpAsync(process.StandardError, text => task.Append(instanceId, true, text));
            await process.WaitForExitAsync(CancellationToken.None);
            await Task.WhenAll(stdout, stderr);
            task.SetRunning(instanceId, false);
            // The platform uploads what the instance wrote under /job, failed or not.
            if (task.ResultBucket is { } resultBucket)
            {
                var uploaded = 0;
                foreach (var file in Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories))
                {
                    var relative = Path.GetRelativePath(folder, file).Replace('\\', '/');
                    if (downloaded.TryGetValue(relative, out var md5) && md5 == await Md5Async(file))
                    {
                        continue;
                    }

                    await _s3.PutObjectAsync(new PutObjectRequest { BucketName = resultBucket, Key = relative, FilePath = file }, CancellationToken.None);
                    uploaded++;
                }

                if (uploaded > 0)
                {
                    task.ResultsUploaded();
                }
            }

            return abort.IsCancellationRequested ? -9 : process.ExitCode;
        }
        finally
        {
            _slots.Release();
            try
            {
                Directory.Delete(Path.GetDirectoryName(folder)!, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    private static async Task PumpAsync(StreamReader reader, Action<string> append)
    {
        var buffer = new char[4096];
        int read;
        while ((read = await reader.ReadAsync(buffer)) > 0)
        {
            append(new string(buffer, 0, read));
        }
    }

    private async Task<List<(string Key, string ETag, long Size)>> ListKeysAsync(string bucket, string prefix)
    {
        var keys = new List<(string, string, long)>();
        var request = new ListObjectsV2Request { BucketName = bucket, Prefix = prefix };
        while (true)
        {
            var page = await _s3.ListObjectsV2Async(request);
            keys.AddRange((page.S3Objects ?? []).Select(o => (o.Key, o.ETag.Trim('"').ToLowerInvariant(), o.Size ?? 0)));
            if (page.IsTruncated != true)
            {
                return keys;
            }

            request.ContinuationToken = page.NextContinuationToken;
        }
    }

    private async Task<bool> BucketExistsAsync(string bucket)
    {
        try
        {
            await _s3.ListObjectsV2Async(new ListObjectsV2Request { BucketName = bucket, MaxKeys = 1 });
            return true;
        }
        catch (AmazonS3Exception ex) when (ex.ErrorCode == "NoSuchBucket" || ex.StatusCode == HttpStatusCode.NotFound)
        {
            return false;
        }
    }

    private static async Task<string> Md5Async(string path)
    {
        await using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(await MD5.HashDataAsync(stream));
    }

    private static JsonArray ProfileConstants(string profile) => profile == "blender"
        ? [.. new[] { "BLEND_FILE", "BLEND_ENGINE", "BLEND_FORMAT", "BLEND_W", "BLEND_H", "BLEND_RATIO", "BLEND_CYCLES_SAMPLES", "BLEND_SCENE" }
            .Select(n => (JsonNode)new JsonObject { ["name"] = n, ["value"] = string.Empty })]
        : [.. new[] { "DOCKER_REPO", "DOCKER_TAG", "DOCKER_CMD" }.Select(n => (JsonNode)new JsonObject { ["name"] = n, ["value"] = string.Empty })];

    private static bool TryParseRanges(string text, out List<int> instances)
    {
        instances = [];
        foreach (var part in text.Split(','))
        {
            var bounds = part.Split('-');
            if (bounds.Length is < 1 or > 2 || !int.TryParse(bounds[0], NumberStyles.None, CultureInfo.InvariantCulture, out var from))
            {
                return false;
            }

            var to = from;
            if (bounds.Length == 2 && (!int.TryParse(bounds[1], NumberStyles.None, CultureInfo.InvariantCulture, out to) || to < from))
            {
                return false;
            }

            instances.AddRange(Enumerable.Range(from, to - from + 1));
        }

        instances = [.. instances.Distinct().Order()];
        return instances.Count > 0;
    }

    internal static JsonNode? Field(JsonObject? node, string name) =>
        node?.FirstOrDefault(p => string.Equals(p.Key, name, StringComparison.OrdinalIgnoreCase)).Value;

    private static string? Text(JsonObject node, string name) => Field(node, name) is JsonValue value && value.TryGetValue<string>(out var text) ? text : null;

    /// <summary>Answers alternate between camelCase and PascalCase, and carry fields the protocol page does not name.</summary>
    private IResult Json(JsonNode node, int status = 200)
    {
        var pascal = Interlocked.Increment(ref _responses) % 2 == 0;
        var shaped = Recase(node.DeepClone(), pascal);
        if (shaped is JsonObject obj)
        {
            obj[pascal ? "EmulatorRevision" : "emulatorRevision"] = "7.0-emulated";
        }

        return Results.Text(shaped.ToJsonString(), "application/json", Encoding.UTF8, status);
    }

    private static JsonNode Recase(JsonNode node, bool pascal)
    {
        switch (node)
        {
            case JsonObject obj:
                var copy = new JsonObject();
                foreach (var (key, value) in obj.ToList())
                {
                    obj.Remove(key);
                    // Map keys (labels) are data, not field names.
                    var isMap = key.Equals("labels", StringComparison.OrdinalIgnoreCase);
                    copy[pascal && key.Length > 0 ? char.ToUpperInvariant(key[0]) + key[1..] : key] =
                        value is null ? null : isMap ? value : Recase(value, pascal);
                }

                return copy;
            case JsonArray array:
                var items = array.ToList();
                array.Clear();
                return new JsonArray([.. items.Select(i => i is null ? null : Recase(i, pascal))]);
            default:
                return node;
        }
    }

    /// <summary>The three error shapes Qarnot answers with, in turn: {"message"}, {"error"}, problem+json.</summary>
    private IResult Error(int status, string message) => (Interlocked.Increment(ref _errors) % 3) switch
    {
        0 => Results.Text(new JsonObject { ["message"] = message }.ToJsonString(), "application/json", Encoding.UTF8, status),
        1 => Results.Text(new JsonObject { ["error"] = message }.ToJsonString(), "application/json", Encoding.UTF8, status),
        _ => Results.Text(new JsonObject
        {
            ["type"] = "https://tools.ietf.org/html/rfc9110",
            ["title"] = message,
            ["status"] = status,
            ["traceId"] = Guid.NewGuid().ToString("N"),
        }.ToJsonString(), "application/problem+json", Encoding.UTF8, status),
    };

    private static IResult Problem(string title, Dictionary<string, string> errors) => Results.Text(new JsonObject
    {
        ["type"] = "https://tools.ietf.org/html/rfc9110#section-15.5.1",
        ["title"] = title,
        ["status"] = 400,
        ["errors"] = new JsonObject([.. errors.Select(e => KeyValuePair.Create(e.Key, (JsonNode?)new JsonArray(e.Value)))]),
    }.ToJsonString(), "application/problem+json", Encoding.UTF8, 400);

    internal static void KillGroup(int pid)
    {
        _ = kill(-pid, 9);
        _ = kill(pid, 9);
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int sig);

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        foreach (var task in _tasks.Values)
        {
            task.Abort();
        }

        if (_scheduler is not null)
        {
            await _scheduler;
        }

        if (_app is not null)
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }

        _s3.Dispose();
        _stopping.Dispose();
    }

    private sealed record Fault(int Status, string? Method, string? Path, bool LoseAnswer)
    {
        public bool Matches(HttpRequest request) =>
            (Method is null || HttpMethods.Equals(Method, request.Method))
            && (Path is null || string.Equals(request.Path.Value, Path, StringComparison.Ordinal));
    }
}

/// <summary>One task as the emulator holds it: state, instances, outputs with Qarnot's "fresh" read semantics.</summary>
public sealed class EmulatedTask
{
    private readonly QarnotEmulator _emulator;
    private readonly object _gate = new();
    private readonly JsonObject _request;
    private readonly Output _output = new();
    private readonly Dictionary<int, Output> _instanceOutput = [];
    private readonly List<JsonObject> _completed = [];
    private readonly HashSet<int> _running = [];
    private readonly CancellationTokenSource _abort = new();
    private readonly int _retries;
    private DateTimeOffset? _ended;
    private int _resultsCount;
    private string _previousState = "Submitted";

    internal EmulatedTask(QarnotEmulator emulator, string uuid, long sequence, JsonObject request, string name, string profile, List<int> instances,
        Dictionary<string, string> constants, List<(string, string, string)> resources, string? resultBucket, List<string> dependsOn, int retries,
        List<string> tags, Dictionary<string, string> labels)
    {
        _emulator = emulator;
        Uuid = uuid;
        Sequence = sequence;
        _request = request;
        Name = name;
        Profile = profile;
        Instances = instances;
        Constants = constants;
        Resources = resources;
        ResultBucket = resultBucket;
        DependsOn = dependsOn;
        _retries = retries;
        Tags = tags;
        Labels = labels;
    }

    public string Uuid { get; }

    public long Sequence { get; }

    public string Name { get; }

    public string Profile { get; }

    public List<int> Instances { get; }

    public Dictionary<string, string> Constants { get; }

    public List<(string Bucket, string Prefix, string Strip)> Resources { get; }

    public string? ResultBucket { get; }

    public List<string> DependsOn { get; }

    public List<string> Tags { get; }

    public Dictionary<string, string> Labels { get; }

    public DateTimeOffset Created { get; } = DateTimeOffset.UtcNow;

    public string State { get; private set; } = "Submitted";

    /// <summary>Instance runs started, retries included.</summary>
    public int Runs { get; private set; }

    public bool IsTerminal => State is "Success" or "Failure" or "Cancelled";

    internal void Start()
    {
        lock (_gate)
        {
            if (State != "Submitted")
            {
                return;
            }

            SetState("FullyDispatched");
        }

        _ = Task.Run(RunAsync);
    }

    private async Task RunAsync()
    {
        var results = await Task.WhenAll(Instances.Select(async instance =>
        {
            for (var attempt = 0; ; attempt++)
            {
                int exit;
                var started = DateTimeOffset.UtcNow;
                try
                {
                    lock (_gate)
                    {
                        Runs++;
                    }

                    exit = await _emulator.RunInstanceAsync(this, instance, attempt, _abort.Token);
                }
                catch (OperationCanceledException)
                {
                    return "Cancelled";
                }
                catch (Exception ex)
                {
                    Append(instance, true, $"emulator: the instance could not run: {ex.Message}\n");
                    exit = 1;
                }

                if (_abort.IsCancellationRequested)
                {
                    return "Cancelled";
                }

                if (exit == 0 || attempt >= _retries)
                {
                    var state = exit == 0 ? "Success" : "Failure";
                    lock (_gate)
                    {
                        _completed.Add(new JsonObject
                        {
                            ["instanceId"] = instance,
                            ["state"] = state,
                            ["wallTimeSec"] = (DateTimeOffset.UtcNow - started).TotalSeconds,
                            ["execTimeSec"] = (DateTimeOffset.UtcNow - started).TotalSeconds,
                            ["peakMemoryMB"] = 0,
                            ["results"] = new JsonArray(),
                        });
                    }

                    return state;
                }
            }
        }));
        lock (_gate)
        {
            _ended = DateTimeOffset.UtcNow;
            SetState(_abort.IsCancellationRequested || results.Contains("Cancelled") ? "Cancelled"
                : results.All(r => r == "Success") ? "Success" : "Failure");
        }
    }

    internal void Abort()
    {
        lock (_gate)
        {
            if (IsTerminal)
            {
                return;
            }

            if (State == "Submitted")
            {
                _ended = DateTimeOffset.UtcNow;
                SetState("Cancelled");
                return;
            }

            SetState("PendingCancel");
        }

        _abort.Cancel();
    }

    internal void SetRunning(int instance, bool running)
    {
        lock (_gate)
        {
            if (running)
            {
                _running.Add(instance);
                if (State is "FullyDispatched" or "Submitted")
                {
                    SetState("FullyExecuting");
                }
            }
            else
            {
                _running.Remove(instance);
            }
        }
    }

    internal void ResultsUploaded()
    {
        lock (_gate)
        {
            _resultsCount++;
        }
    }

    /// <summary>Everything the task's instances printed, for a test's failure message (the "fresh" offsets are untouched).</summary>
    /// <returns>The task's name, state, stdout and stderr.</returns>
    public string Transcript()
    {
        lock (_gate)
        {
            return $"--- {Name} ({Uuid}): {State}\nstdout:\n{_output.Out}\nstderr:\n{_output.Err}";
        }
    }

    internal void Append(int instance, bool error, string text)
    {
        lock (_gate)
        {
            if (!_instanceOutput.TryGetValue(instance, out var output))
            {
                _instanceOutput[instance] = output = new Output();
            }

            (error ? output.Err : output.Out).Append(text);
            (error ? _output.Err : _output.Out).Append(text);
        }
    }

    internal string ReadOutput(bool error, int? instance, bool fresh)
    {
        lock (_gate)
        {
            var output = instance is null ? _output : _instanceOutput.TryGetValue(instance.Value, out var o) ? o : new Output();
            var buffer = error ? output.Err : output.Out;
            var from = fresh ? (error ? output.ErrRead : output.OutRead) : 0;
            var text = buffer.ToString(from, buffer.Length - from);
            if (fresh)
            {
                if (error)
                {
                    output.ErrRead = buffer.Length;
                }
                else
                {
                    output.OutRead = buffer.Length;
                }
            }

            return text;
        }
    }

    private void SetState(string state)
    {
        _previousState = State;
        State = state;
    }

    internal JsonObject ToJson()
    {
        lock (_gate)
        {
            var json = (JsonObject)_request.DeepClone();
            var succeeded = _completed.Where(c => (string)c["state"]! == "Success").Select(c => (int)c["instanceId"]!).ToList();
            var failed = _completed.Where(c => (string)c["state"]! == "Failure").Select(c => (int)c["instanceId"]!).ToList();
            json["uuid"] = Uuid;
            json["shortname"] = Uuid;
            json["state"] = State;
            json["previousState"] = _previousState;
            json["progress"] = Instances.Count == 0 ? 0 : 100.0 * _completed.Count / Instances.Count;
            json["creationDate"] = Created.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", CultureInfo.InvariantCulture);
            json["endDate"] = (_ended ?? DateTimeOffset.MinValue).ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture);
            json["executionTime"] = "0.00:00:01";
            json["wallTime"] = (DateTimeOffset.UtcNow - Created).ToString(@"d\.hh\:mm\:ss", CultureInfo.InvariantCulture);
            json["runningInstanceCount"] = _running.Count;
            json["runningCoreCount"] = _running.Count * 2;
            json["resultsCount"] = _resultsCount;
            json["errors"] = new JsonArray();
            json["completedInstances"] = new JsonArray([.. _completed.Select(c => (JsonNode)c.DeepClone())]);
            json["status"] = new JsonObject
            {
                ["executionProgress"] = json["progress"]!.DeepClone(),
                ["succeededRange"] = string.Join(',', succeeded),
                ["executedRange"] = string.Join(',', succeeded.Concat(failed).Order()),
                ["failedRange"] = string.Join(',', failed),
                ["runningInstancesInfo"] = new JsonObject
                {
                    ["perRunningInstanceInfo"] = new JsonArray([.. _running.Select(r => (JsonNode)new JsonObject
                    {
                        ["instanceId"] = r,
                        ["phase"] = "execution",
                        ["progress"] = 0,
                        ["cpuUsage"] = 12.5,
                    })]),
                },
            };
            json["snapshotInterval"] = 0;
            return json;
        }
    }

    private sealed class Output
    {
        public StringBuilder Out { get; } = new();

        public StringBuilder Err { get; } = new();

        public int OutRead { get; set; }

        public int ErrRead { get; set; }
    }
}

// Upload figures for the Qarnot adapter (issue 6), in one run on the test S3 server (@20minutes/s3rver) behind the
// Qarnot emulator: the adapter's CopyRenderFilesAsync against a plain sequential PutObject loop over the same files.
//   dotnet run -c Release --project bench/Qarnot -- [SMALL_FILES] [SMALL_BYTES] [BIG_MB]
using System.Diagnostics;
using System.Globalization;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;
using FarmApi;
using FarmPlugins.Qarnot;
using FarmPlugins.Qarnot.Tests;
using FarmPlugins.TestSupport;
using Microsoft.Extensions.Logging;

var smallCount = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 1000;
var smallBytes = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 4096;
var bigMegabytes = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 100;

// s3rver's objects, and the bench's files, in memory (/dev/shm) unless BENCH_TMP names another folder: on this machine's
// journal-less ext4 every file created near recently deleted ones costs more, so s3rver's CPU per PUT grew from ~2 to
// ~5.6 ms over successive runs on disk; in memory it stays at 1.7-2 ms and the figures compare the clients, not the disk.
var benchTmp = Environment.GetEnvironmentVariable("BENCH_TMP") ?? (Directory.Exists("/dev/shm") ? "/dev/shm" : null);
if (!string.IsNullOrEmpty(benchTmp))
{
    Environment.SetEnvironmentVariable("TMPDIR", benchTmp);
}

using var dir = new TempDir("qarnot-bench");
Console.WriteLine($"files and s3rver's objects under {Path.GetTempPath()}");
var token = "bench-" + Guid.NewGuid().ToString("N");
const string Email = "bench@studio.example";
await using var s3 = await S3rverServer.StartAsync([(Email, token)]);
await using var emulator = new QarnotEmulator(s3.Url, token, Email, dir.Combine("nodes"));
await emulator.StartAsync();

Console.WriteLine($"writing {smallCount} files of {smallBytes} bytes and 2 files of {bigMegabytes} MB...");
var small = new List<RenderFile>();
for (var i = 0; i < smallCount; i++)
{
    var bytes = new byte[smallBytes];
    Random.Shared.NextBytes(bytes);
    var path = dir.Combine("small", $"f{i:D4}.bin");
    Directory.CreateDirectory(Path.GetDirectoryName(path)!);
    await File.WriteAllBytesAsync(path, bytes);
    small.Add(new RenderFile(path, $"small/f{i:D4}.bin"));
}

var big = new List<RenderFile>();
for (var i = 0; i < 2; i++)
{
    var path = dir.Combine($"big{i}.bin");
    await using (var file = File.Create(path))
    {
        var block = new byte[1 << 20];
        for (var mb = 0; mb < bigMegabytes; mb++)
        {
            Random.Shared.NextBytes(block);
            await file.WriteAsync(block);
        }
    }

    big.Add(new RenderFile(path, $"big/big{i}.bin"));
}

// The peer: the adapter's client settings (checksums only when required, bodies signed whole, not aws-chunked).
using var plain = new AmazonS3Client(new BasicAWSCredentials(Email, token), new AmazonS3Config
{
    ServiceURL = s3.Url.AbsoluteUri,
    ForcePathStyle = true,
    AuthenticationRegion = "us-east-1",
    RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED,
    ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
});
await plain.PutBucketAsync("plain-loop");

async Task<TimeSpan> PlainLoopAsync(IReadOnlyList<RenderFile> files, string prefix)
{
    var watch = Stopwatch.StartNew();
    foreach (var file in files)
    {
        await plain.PutObjectAsync(new PutObjectRequest { BucketName = "plain-loop", Key = prefix + file.RelativePath, FilePath = file.LocalPath, UseChunkEncoding = false });
    }

    return watch.Elapsed;
}

var staged = new List<string>();
using var loggerFactory = LoggerFactory.Create(b => b.AddProvider(new StagedLogProvider(staged)));
var settings = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
{
    ["Token"] = token,
    ["ApiUrl"] = emulator.Url.AbsoluteUri,
    ["BucketPrefix"] = "bench",
    ["Transfers"] = Environment.GetEnvironmentVariable("BENCH_TRANSFERS") ?? "16",
};

async Task<(TimeSpan Elapsed, string Log)> AdapterAsync(RenderContext context, IReadOnlyList<RenderFile> files, string dataFolder = "data")
{
    // A new instance each time, as a new host process would be: the ETag cache comes from the data directory.
    await using var plugin = new QarnotPlugin();
    await plugin.InitializeAsync(new FarmPluginContext
    {
        PluginName = "Qarnot",
        LoggerFactory = loggerFactory,
        Settings = settings,
        DataDirectory = dir.Combine(dataFolder),
    });
    var folder = await plugin.CreateTemporaryFolderAsync(context);
    var watch = Stopwatch.StartNew();
    await plugin.CopyRenderFilesAsync(context, folder, files);
    var elapsed = watch.Elapsed;
    return (elapsed, staged[^1]);
}

// CPU time of this process (client and emulator) and of s3rver's Node process, per phase: where the time goes.
using var server = Process.GetProcessById(s3.ProcessId);
using var self = Process.GetCurrentProcess();
(TimeSpan Client, TimeSpan Server) Cpu()
{
    self.Refresh();
    server.Refresh();
    return (self.TotalProcessorTime, server.TotalProcessorTime);
}

async Task<Phase> TimedAsync(Func<Task<TimeSpan>> run)
{
    var before = Cpu();
    var elapsed = await run();
    var after = Cpu();
    return new Phase(elapsed, after.Client - before.Client, after.Server - before.Server);
}

// Warm both paths up before anything is timed, with as many requests as are measured: .NET's tiered JIT (the SDK's
// request pipeline) and V8's (s3rver's handlers) take hundreds of requests to settle, and 20 left that cost inside
// whichever phase ran first, the loop's. The adapter's warm-up has its own data directory, so the measured first
// upload still computes every file's MD5 as a real first upload does; a 17 MiB file warms the multipart path.
var warmBig = dir.Combine("warm-up-big.bin");
await File.WriteAllBytesAsync(warmBig, new byte[17 << 20]);
await PlainLoopAsync([.. small, new RenderFile(warmBig, "big/warm-up-big.bin")], "warm-up/");
await AdapterAsync(RenderContext.Create("bench-warm-up"), [.. small, new RenderFile(warmBig, "big/warm-up-big.bin")], "data-warm-up");
var smallContext = RenderContext.Create("bench-small");
var bigContext = RenderContext.Create("bench-big");
var smallLog = string.Empty;
var bigLog = string.Empty;
var plainSmall = await TimedAsync(() => PlainLoopAsync(small, "small-run/"));
var adapterSmall = await TimedAsync(async () => { var (t, log) = await AdapterAsync(smallContext, small); smallLog = log; return t; });
var plainBig = await TimedAsync(() => PlainLoopAsync(big, "big-run/"));
var adapterBig = await TimedAsync(async () => { var (t, log) = await AdapterAsync(bigContext, big); bigLog = log; return t; });

// The same set again, three times (each a new plug-in instance, as a new host process); the median is reported.
var again = new List<(Phase Small, Phase Big, string SmallLog, string BigLog)>();
for (var round = 0; round < 3; round++)
{
    var (smallAgainLog, bigAgainLog) = (string.Empty, string.Empty);
    var smallAgain = await TimedAsync(async () => { var (t, log) = await AdapterAsync(smallContext, small); smallAgainLog = log; return t; });
    var bigAgain = await TimedAsync(async () => { var (t, log) = await AdapterAsync(bigContext, big); bigAgainLog = log; return t; });
    again.Add((smallAgain, bigAgain, smallAgainLog, bigAgainLog));
}

// What the re-upload cannot avoid: the one listing of the small files' prefix, timed alone (median of three).
var listed = 0;
var listings = new List<Phase>();
for (var round = 0; round < 3; round++)
{
    listings.Add(await TimedAsync(async () =>
    {
        var listWatch = Stopwatch.StartNew();
        listed = 0;
        var listRequest = new ListObjectsV2Request { BucketName = "bench-resources", Prefix = smallContext.Id + "/" };
        while (true)
        {
            var page = await plain.ListObjectsV2Async(listRequest);
            listed += page.S3Objects?.Count ?? 0;
            if (page.IsTruncated != true)
            {
                return listWatch.Elapsed;
            }

            listRequest.ContinuationToken = page.NextContinuationToken;
        }
    }));
}

static string S(TimeSpan t) => t.TotalSeconds.ToString("0.000", CultureInfo.InvariantCulture) + " s";
static string X(double x) => x.ToString("0.00", CultureInfo.InvariantCulture) + "×";
static string P(double x) => (100 * x).ToString("0.0", CultureInfo.InvariantCulture) + " %";
static string C(Phase p) => $"client CPU {S(p.ClientCpu)}, s3rver CPU {S(p.ServerCpu)}";
string PerPut(Phase p) => $"{(p.ClientCpu.TotalMilliseconds / smallCount).ToString("0.00", CultureInfo.InvariantCulture)} / {(p.ServerCpu.TotalMilliseconds / smallCount).ToString("0.00", CultureInfo.InvariantCulture)} ms";
static string Load() => File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "?";
var first = adapterSmall.Elapsed + adapterBig.Elapsed;
var againTotals = again.Select(a => a.Small.Elapsed + a.Big.Elapsed).ToList();
var againMedian = againTotals.Order().ElementAt(1);
var againRun = again[againTotals.IndexOf(againMedian)];
var listing = listings.OrderBy(l => l.Elapsed).ElementAt(1);
Console.WriteLine();
Console.WriteLine($"load average at the end: {Load()}");
Console.WriteLine($"| figure | value | target |");
Console.WriteLine($"|---|---|---|");
Console.WriteLine($"| {smallCount} files of {smallBytes} B: plain sequential PutObject loop | {S(plainSmall.Elapsed)} ({C(plainSmall)}) | |");
Console.WriteLine($"| {smallCount} files of {smallBytes} B: adapter CopyRenderFilesAsync | {S(adapterSmall.Elapsed)} ({X(plainSmall.Elapsed / adapterSmall.Elapsed)} faster; {C(adapterSmall)}) | ≥ 3× |");
Console.WriteLine($"| CPU per small-file PUT, client / s3rver: loop; adapter | {PerPut(plainSmall)}; {PerPut(adapterSmall)} | |");
Console.WriteLine($"| 2 files of {bigMegabytes} MB: plain sequential PutObject loop | {S(plainBig.Elapsed)} ({C(plainBig)}) | |");
Console.WriteLine($"| 2 files of {bigMegabytes} MB: adapter (multipart, 8 MiB parts) | {S(adapterBig.Elapsed)} ({X(plainBig.Elapsed / adapterBig.Elapsed)} the loop's speed; {C(adapterBig)}) | report |");
Console.WriteLine($"| same set again, median of 3: time | {S(againMedian)} ({P(againMedian / first)} of the first {S(first)}; all three: {string.Join(", ", againTotals.Select(t => P(t / first)))}) | ≤ 5 % |");
Console.WriteLine($"| of which the small files | {S(againRun.Small.Elapsed)} ({C(againRun.Small)}) | |");
Console.WriteLine($"| one listing of the {listed} small files' prefix, timed alone (median of 3) | {S(listing.Elapsed)} ({C(listing)}) | |");
Console.WriteLine($"| same set again: adapter log | {againRun.SmallLog}; {againRun.BigLog} | 0 bytes |");
Console.WriteLine();
Console.WriteLine($"first uploads: {smallLog}; {bigLog}");
return 0;

internal sealed record Phase(TimeSpan Elapsed, TimeSpan ClientCpu, TimeSpan ServerCpu);

internal sealed class StagedLogProvider(List<string> staged) : ILoggerProvider
{
    public ILogger CreateLogger(string categoryName) => new StagedLogger(staged);

    public void Dispose()
    {
    }

    private sealed class StagedLogger(List<string> staged) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (eventId.Id == 6002)
            {
                lock (staged)
                {
                    staged.Add(formatter(state, exception));
                }
            }
        }
    }
}

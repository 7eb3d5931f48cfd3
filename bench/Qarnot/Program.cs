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

using var dir = new TempDir("qarnot-bench");
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
        await plain.PutObjectAsync(new PutObjectRequest { BucketName = "plain-loop", Key = prefix + file.RelativePath, FilePath = file.LocalPath });
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

async Task<(TimeSpan Elapsed, string Log)> AdapterAsync(RenderContext context, IReadOnlyList<RenderFile> files)
{
    // A new instance each time, as a new host process would be: the ETag cache comes from the data directory.
    await using var plugin = new QarnotPlugin();
    await plugin.InitializeAsync(new FarmPluginContext
    {
        PluginName = "Qarnot",
        LoggerFactory = loggerFactory,
        Settings = settings,
        DataDirectory = dir.Combine("data"),
    });
    var folder = await plugin.CreateTemporaryFolderAsync(context);
    var watch = Stopwatch.StartNew();
    await plugin.CopyRenderFilesAsync(context, folder, files);
    var elapsed = watch.Elapsed;
    return (elapsed, staged[^1]);
}

// Warm both clients up (JIT, connections) on a few files of their own before anything is timed.
await PlainLoopAsync(small.Take(20).ToList(), "warm-up/");
await AdapterAsync(RenderContext.Create("bench-warm-up"), small.Take(20).ToList());
var smallContext = RenderContext.Create("bench-small");
var bigContext = RenderContext.Create("bench-big");
var plainSmall = await PlainLoopAsync(small, "small-run/");
var (adapterSmall, smallLog) = await AdapterAsync(smallContext, small);
var plainBig = await PlainLoopAsync(big, "big-run/");
var (adapterBig, bigLog) = await AdapterAsync(bigContext, big);
var (againSmall, againSmallLog) = await AdapterAsync(smallContext, small);
var (againBig, againBigLog) = await AdapterAsync(bigContext, big);

// What the re-upload cannot avoid: the one listing of the prefix, timed alone.
var listWatch = Stopwatch.StartNew();
var listed = 0;
var listRequest = new ListObjectsV2Request { BucketName = "bench-resources", Prefix = smallContext.Id + "/" };
while (true)
{
    var page = await plain.ListObjectsV2Async(listRequest);
    listed += page.S3Objects?.Count ?? 0;
    if (page.IsTruncated != true)
    {
        break;
    }

    listRequest.ContinuationToken = page.NextContinuationToken;
}

var listing = listWatch.Elapsed;

static string S(TimeSpan t) => t.TotalSeconds.ToString("0.000", CultureInfo.InvariantCulture) + " s";
static string X(double x) => x.ToString("0.00", CultureInfo.InvariantCulture) + "×";
static string P(double x) => (100 * x).ToString("0.0", CultureInfo.InvariantCulture) + " %";
var first = adapterSmall + adapterBig;
var again = againSmall + againBig;
Console.WriteLine();
Console.WriteLine($"| figure | value | target |");
Console.WriteLine($"|---|---|---|");
Console.WriteLine($"| {smallCount} files of {smallBytes} B: plain sequential PutObject loop | {S(plainSmall)} | |");
Console.WriteLine($"| {smallCount} files of {smallBytes} B: adapter CopyRenderFilesAsync | {S(adapterSmall)} ({X(plainSmall / adapterSmall)} faster) | ≥ 3× |");
Console.WriteLine($"| 2 files of {bigMegabytes} MB: plain sequential PutObject loop | {S(plainBig)} | |");
Console.WriteLine($"| 2 files of {bigMegabytes} MB: adapter (multipart, 8 MiB parts) | {S(adapterBig)} ({X(plainBig / adapterBig)} the loop's speed) | report |");
Console.WriteLine($"| same set again: time | {S(again)} ({P(again / first)} of the first {S(first)}) | ≤ 5 % |");
Console.WriteLine($"| of which one listing of the {listed} small files' prefix (timed alone) | {S(listing)} | |");
Console.WriteLine($"| same set again: adapter log | {againSmallLog}; {againBigLog} | 0 bytes |");
Console.WriteLine();
Console.WriteLine($"first uploads: {smallLog}; {bigLog}");
return 0;

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

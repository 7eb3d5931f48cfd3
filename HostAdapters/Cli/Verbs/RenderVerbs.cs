using System.CommandLine;
using Command = System.CommandLine.Command;
using System.Diagnostics;
using System.Globalization;
using FarmApi;
using FarmApi.Hashing;
using FarmPlugins.Hosts;
using FarmPlugins.Hosts.Blender;
using FarmPlugins.Hosts.Imaging;
using FarmPlugins.Hosts.PovRay;

namespace FarmPlugins.Cli.Verbs;

/// <summary>Render settings options shared by <c>render</c> and <c>demo</c>.</summary>
internal sealed class RenderOptions
{
    public Option<string?> Frames { get; } = new("--frames", "-f") { Description = "Frame list: 1-100, 1-100x2, 10-1, 1-10,20 (default: the scene's frame)." };

    public Option<int> Chunk { get; } = new("--chunk") { Description = "Consecutive frames per task.", DefaultValueFactory = _ => 1 };

    public Option<string?> Tiles { get; } = new("--tiles") { Description = "Split each frame into CxR tiles merged on the farm, e.g. 2x2." };

    public Option<string?> Size { get; } = new("--size") { Description = "Image size WxH, overriding the scene's, e.g. 320x180." };

    public Option<bool> Antialias { get; } = new("--antialias") { Description = "Antialiasing on (off by default)." };

    public Option<int> Threads { get; } = new("--threads") { Description = "Render threads per task (0: the renderer's default)." };

    public Option<string> Type { get; } = new("--type") { Description = "disk (frames fetched to --out) or preview (one frame handed back).", DefaultValueFactory = _ => "disk" };

    public Option<string?> Out { get; } = new("--out", "-o") { Description = "Where fetched frames go." };

    public Option<string?> Name { get; } = new("--name", "-n") { Description = "The job's name." };

    public void AddTo(Command command)
    {
        command.Add(Frames);
        command.Add(Chunk);
        command.Add(Tiles);
        command.Add(Size);
        command.Add(Antialias);
        command.Add(Threads);
        command.Add(Type);
        command.Add(Out);
        command.Add(Name);
    }

    public RenderSettings Read(ParseResult parse, string? defaultFrames = null, string? defaultTiles = null, string? defaultSize = null)
    {
        var type = (parse.GetValue(Type) ?? "disk").ToLowerInvariant() switch
        {
            "disk" => RenderType.Disk,
            "preview" => RenderType.Preview,
            var other => throw new UsageException($"--type '{other}' is not disk or preview."),
        };
        var frames = parse.GetValue(Frames) ?? defaultFrames;
        var tiles = parse.GetValue(Tiles) ?? defaultTiles;
        var size = parse.GetValue(Size) ?? defaultSize;
        var settings = new RenderSettings
        {
            Frames = frames is null ? null : FrameList.Parse(frames),
            Chunk = parse.GetValue(Chunk),
            Tiles = tiles is null ? TileGrid.Single : TileGrid.Parse(tiles),
            Size = size is null ? null : ImageSize.Parse(size),
            Antialias = parse.GetValue(Antialias),
            Threads = parse.GetValue(Threads),
            Type = type,
        };
        settings.Validate();
        return settings;
    }
}

/// <summary><c>farm render</c>: a scene through its host adapter (chosen by extension) on the chosen farm.</summary>
internal sealed class RenderVerb : Verb
{
    private readonly Argument<string> _scene = new("scene") { Description = "The scene: .pov (POV-Ray) or .blend (Blender)." };
    private readonly RenderOptions _options = new();
    private readonly Option<bool> _wait = new("--wait", "-w") { Description = "Wait for the job; with --out, fetch the frames when it completes." };

    protected override Command Create()
    {
        var command = new Command("render", Describe("Render a scene on the farm.",
            "farm render samples/scenes/demo.pov --frames 1-24 --tiles 2x2 --size 320x180 --wait --out frames"));
        command.Add(_scene);
        _options.AddTo(command);
        command.Add(_wait);
        return command;
    }

    protected override async Task<int> RunAsync(ParseResult parse, CliSession session, CancellationToken cancellationToken)
    {
        var scene = Path.GetFullPath(parse.GetValue(_scene)!);
        if (!File.Exists(scene))
        {
            throw new UsageException($"The scene {scene} does not exist.");
        }

        var settings = _options.Read(parse);
        var hosts = new HostAdapterRegistry([new PovRayHostAdapter(), new BlenderHostAdapter()]);
        var adapter = hosts.ForScene(scene);
        var output = parse.GetValue(_options.Out) is { } o ? Path.GetFullPath(o) : null;
        var job = new RenderJob
        {
            Adapter = adapter,
            ScenePath = scene,
            Settings = settings,
            Name = parse.GetValue(_options.Name),
            OutputFolder = output,
        };
        var plugin = await session.PluginAsync(cancellationToken).ConfigureAwait(false);
        var flow = new RenderFlow(plugin, session.LoggerFactory);
        var view = ProgressView.For(session);
        var submission = await flow.SubmitAsync(job, view, cancellationToken).ConfigureAwait(false);
        view.Finish();
        if (session.Json)
        {
            session.WriteJsonLine(new { id = submission.JobId });
        }
        else
        {
            session.Say(submission.JobId);
        }

        var wait = parse.GetValue(_wait) || settings.Type == RenderType.Preview;
        if (!wait)
        {
            return ExitCodes.Success;
        }

        var code = await JobWaiter.WaitAsync(session, plugin, submission.JobId, cancellationToken).ConfigureAwait(false);
        if (code == ExitCodes.Success && (output is not null || settings.Type == RenderType.Preview))
        {
            var folder = output ?? Directory.GetCurrentDirectory();
            var fetched = await flow.FetchAsync(submission.JobId, folder, null, cancellationToken).ConfigureAwait(false);
            session.Say($"{submission.Plan.FrameOutputs.Count} frame(s) in {folder} ({fetched.Count} fetched)");
        }

        return code;
    }
}

/// <summary>
/// <c>farm demo</c>: the main job. Renders the shipped 24-frame POV-Ray animation in 2×2 tiles on LocalQueue with
/// the live view, fetches the frames, writes a contact sheet and says where everything is. A second run with the same
/// scene and settings reuses the frames already rendered.
/// </summary>
internal sealed class DemoVerb : Verb
{
    private readonly RenderOptions _options = new();
    private readonly Option<bool> _force = new("--force") { Description = "Render again even when the frames are up to date." };

    protected override Command Create()
    {
        var command = new Command("demo", Describe("Render the shipped example animation (24 frames, 2x2 tiles) on LocalQueue and make a contact sheet.",
            "farm demo   |   farm demo --frames 1-4 --size 160x90"));
        _options.AddTo(command);
        command.Add(_force);
        return command;
    }

    protected override async Task<int> RunAsync(ParseResult parse, CliSession session, CancellationToken cancellationToken)
    {
        var home = Environment.GetEnvironmentVariable("FARM_HOME") ?? FindRepository();
        var scene = Path.Combine(home, "samples", "scenes", "demo.pov");
        if (!File.Exists(scene))
        {
            throw new UsageException($"The demo scene {scene} is missing; run the demo from the FarmPlugins repository (./farm demo).");
        }

        await EnsurePovRayAsync(session, cancellationToken).ConfigureAwait(false);
        var settings = _options.Read(parse, defaultFrames: "1-24", defaultTiles: "2x2", defaultSize: "320x180");
        var output = Path.GetFullPath(parse.GetValue(_options.Out) ?? Path.Combine(home, "out", "demo"));
        Directory.CreateDirectory(output);
        var hosts = new HostAdapterRegistry([new PovRayHostAdapter()]);
        var job = new RenderJob
        {
            Adapter = hosts.ForScene(scene),
            ScenePath = scene,
            Settings = settings,
            Name = parse.GetValue(_options.Name) ?? "demo",
            OutputFolder = output,
        };

        var watch = Stopwatch.StartNew();
        var plugin = await session.PluginAsync(cancellationToken).ConfigureAwait(false);
        var flow = new RenderFlow(plugin, session.LoggerFactory);
        var plan = await flow.PlanAsync(job, cancellationToken).ConfigureAwait(false);
        var frames = plan.FrameOutputs.Select(f => Path.Combine(output, f.Path)).ToList();
        var stampFile = Path.Combine(output, ".demo-stamp");
        var stamp = await StampAsync(scene, settings, cancellationToken).ConfigureAwait(false);
        var upToDate = !parse.GetValue(_force) && frames.All(File.Exists) && File.Exists(stampFile)
            && await File.ReadAllTextAsync(stampFile, cancellationToken).ConfigureAwait(false) == stamp;
        string? jobId = null;
        if (upToDate)
        {
            session.Say($"The {frames.Count} frames in {output} are up to date (same scene and settings); reusing them. Use --force to render again.");
        }
        else
        {
            File.Delete(stampFile);
            var view = ProgressView.For(session);
            var submission = await flow.SubmitPlanAsync(job, plan, view, cancellationToken).ConfigureAwait(false);
            view.Finish();
            jobId = submission.JobId;
            session.Say($"Rendering {frames.Count} frames of {Path.GetFileName(scene)} in {settings.Tiles.Columns}x{settings.Tiles.Rows} tiles on {plugin.Name}: job {jobId}");
            var code = await JobWaiter.WaitAsync(session, plugin, jobId, cancellationToken).ConfigureAwait(false);
            if (code != ExitCodes.Success)
            {
                session.Say($"The demo job {jobId} did not complete; see 'farm log {jobId}' and 'farm tasks {jobId}'.");
                return code;
            }

            await flow.FetchAsync(jobId, output, null, cancellationToken).ConfigureAwait(false);
            await File.WriteAllTextAsync(stampFile, stamp, cancellationToken).ConfigureAwait(false);
        }

        var sheet = Path.Combine(output, "contact-sheet.png");
        await ContactSheet.WriteAsync(frames, sheet, cancellationToken).ConfigureAwait(false);
        if (session.Json)
        {
            session.WriteJson(new { id = jobId, frames, contactSheet = sheet, reused = upToDate, seconds = watch.Elapsed.TotalSeconds });
        }
        else
        {
            session.Say($"{frames.Count} frames in {output}");
            session.Say($"contact sheet: {sheet}");
            session.Say(string.Create(CultureInfo.InvariantCulture, $"done in {watch.Elapsed.TotalSeconds:0.0} s"));
        }

        return ExitCodes.Success;
    }

    private static async Task<string> StampAsync(string scene, RenderSettings settings, CancellationToken cancellationToken)
    {
        var hashes = new List<string>();
        foreach (var file in Directory.GetFiles(Path.GetDirectoryName(scene)!).Order(StringComparer.Ordinal))
        {
            hashes.Add(await ContentHash.ComputeFileAsync(file, cancellationToken).ConfigureAwait(false));
        }

        return string.Join('\n', hashes) + "\n" + string.Create(CultureInfo.InvariantCulture,
            $"{settings.Frames}|{settings.Chunk}|{settings.Tiles.Columns}x{settings.Tiles.Rows}|{settings.Size?.Width}x{settings.Size?.Height}|{settings.Antialias}");
    }

    private static async Task EnsurePovRayAsync(CliSession session, CancellationToken cancellationToken)
    {
        // Debian splits POV-Ray: the standard include files (colors.inc...) are in povray-includes, a recommendation only.
        if (File.Exists("/usr/bin/povray") && File.Exists("/usr/share/povray-3.7/include/colors.inc"))
        {
            return;
        }

        if (Environment.UserName != "root")
        {
            throw new FarmPluginException("POV-Ray is not installed. Install it with: sudo apt-get install -y povray povray-includes");
        }

        await session.Err.WriteLineAsync("farm: installing POV-Ray (apt-get install -y povray povray-includes)...").ConfigureAwait(false);
        foreach (var arguments in new[] { new[] { "update", "-qq" }, new[] { "install", "-y", "-qq", "--no-install-recommends", "povray", "povray-includes" } })
        {
            var info = new ProcessStartInfo("apt-get") { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var argument in arguments)
            {
                info.ArgumentList.Add(argument);
            }

            info.Environment["DEBIAN_FRONTEND"] = "noninteractive";
            using var process = Process.Start(info)!;
            var stderr = process.StandardError.ReadToEndAsync(cancellationToken);
            _ = process.StandardOutput.ReadToEndAsync(cancellationToken);
            await process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
            if (process.ExitCode != 0)
            {
                throw new FarmPluginException($"apt-get {string.Join(' ', arguments)} failed: {(await stderr.ConfigureAwait(false)).Trim()}");
            }
        }
    }

    private static string FindRepository()
    {
        for (var folder = new DirectoryInfo(AppContext.BaseDirectory); folder is not null; folder = folder.Parent)
        {
            if (File.Exists(Path.Combine(folder.FullName, "FarmPlugins.sln")))
            {
                return folder.FullName;
            }
        }

        return Directory.GetCurrentDirectory();
    }
}

/// <summary>A contact sheet: every frame, scaled down, in a grid.</summary>
internal static class ContactSheet
{
    public static async Task WriteAsync(IReadOnlyList<string> frames, string path, CancellationToken cancellationToken)
    {
        if (frames.Count == 0)
        {
            return;
        }

        var images = new List<PngImage>();
        foreach (var frame in frames)
        {
            images.Add((await PngImage.LoadAsync(frame, cancellationToken).ConfigureAwait(false)).ConvertTo(3, 8));
        }

        var columns = (int)Math.Ceiling(Math.Sqrt(images.Count * 1.5));
        var rows = (int)Math.Ceiling(images.Count / (double)columns);
        var cellWidth = Math.Min(images[0].Width, 160);
        var cellHeight = Math.Max(1, images[0].Height * cellWidth / images[0].Width);
        const int gap = 4;
        var sheet = new PngImage(columns * (cellWidth + gap) + gap, rows * (cellHeight + gap) + gap, 3, 8);
        for (var i = 0; i < images.Count; i++)
        {
            var cell = images[i].Resize(cellWidth, cellHeight);
            sheet.Paste(cell, gap + (i % columns) * (cellWidth + gap), gap + (i / columns) * (cellHeight + gap));
        }

        await sheet.SaveAsync(path, cancellationToken).ConfigureAwait(false);
    }
}

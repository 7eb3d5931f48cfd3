using System.Globalization;
using FarmApi;

namespace FarmPlugins.Hosts.PovRay;

/// <summary>
/// The POV-Ray 3.7 host adapter: collects a <c>.pov</c> scene's dependencies and plans frames, chunks and tiles.
/// Each frame is rendered with <c>povray +I&lt;scene&gt; +O... +FN +W +H -D +KFI +KFF +SF +EF</c> (the clock runs over
/// the frame list's smallest to largest frame) and moved to its final name with <c>farm-tools move</c>, because
/// POV-Ray appends the frame number itself; tiles are window renders (<c>+SC +EC +SR +ER</c>, 1-based inclusive)
/// of full-size images, written as run-length TGA (<c>+FC</c>) and cropped by <c>farm-tools merge --full-size-tiles</c>.
/// </summary>
public sealed class PovRayHostAdapter : IHostAdapter
{
    /// <summary>The host name: the installation the tasks need.</summary>
    public const string HostName = "povray";

    private readonly PovRayOptions _options;

    /// <summary>Makes the adapter.</summary>
    /// <param name="options">Search paths and defaults; validated here.</param>
    public PovRayHostAdapter(PovRayOptions? options = null)
    {
        _options = options ?? new PovRayOptions();
        _options.Validate();
    }

    /// <inheritdoc/>
    public string Name => HostName;

    /// <inheritdoc/>
    public IReadOnlyList<string> Extensions { get; } = [".pov"];

    /// <inheritdoc/>
    public async Task<RenderPlan> PlanAsync(string scenePath, RenderSettings settings, CancellationToken cancellationToken = default)
    {
        HostAdapterArguments.Validate(scenePath, settings);

        var sceneDirectory = Path.GetDirectoryName(Path.GetFullPath(scenePath))!;
        var libraryPaths = _options.LibraryPaths.Concat(await ReadIniLibraryPathsAsync(sceneDirectory, cancellationToken).ConfigureAwait(false)).ToList();
        var staging = _options.StagingDirectory ?? Path.Combine(Path.GetTempPath(), "farm-povray-" + Guid.NewGuid().ToString("N"));
        var scanner = new PovRayDependencyScanner(sceneDirectory, libraryPaths, _options.SystemIncludeDirectory, staging);
        var files = await scanner.ScanAsync(scenePath, cancellationToken).ConfigureAwait(false);

        var sceneRelative = files[0].RelativePath;
        var sceneName = Path.GetFileNameWithoutExtension(scenePath);
        var frames = settings.Frames ?? FrameList.Of([1]);
        var size = settings.Size ?? _options.DefaultSize;
        if (settings.Tiles.Columns > size.Width || settings.Tiles.Rows > size.Height)
        {
            throw new ArgumentException($"tiles: {settings.Tiles} has more tiles than pixels in {size}.", nameof(settings));
        }

        var outputs = frames.Select(f => new FrameOutput(f, OutputNaming.Format(settings.OutputPattern, sceneName, f))).ToList();
        var outputByFrame = outputs.ToDictionary(o => o.Frame, o => o.Path);
        // farm-tools moves every frame to its final name (and merges tiles), so every plan needs it.
        string[] hosts = [HostName, FarmTools.HostName];

        return new RenderPlan(sceneRelative, files, hosts, outputs, size, installations =>
        {
            var povray = installations[HostName].Executable;
            var tools = installations[FarmTools.HostName].Executable;

            List<string> Arguments(int frame, string outputPrefix, string format)
            {
                var arguments = new List<string>
                {
                    "+I" + sceneRelative,
                    "+O" + outputPrefix + "." + format,
                    format == "tga" ? "+FC" : "+FN",
                    Invariant($"+W{size.Width}"),
                    Invariant($"+H{size.Height}"),
                    "-D",
                    "-P",
                    settings.Antialias ? Invariant($"+A{_options.AntialiasThreshold:0.0##}") : "-A",
                    Invariant($"+KFI{frames.Min}"),
                    Invariant($"+KFF{frames.Max}"),
                    Invariant($"+SF{frame}"),
                    Invariant($"+EF{frame}"),
                };
                if (settings.Antialias && _options.AntialiasDepth is { } depth)
                {
                    arguments.Add(Invariant($"+R{depth}"));
                }

                if (settings.Threads > 0)
                {
                    arguments.Add(Invariant($"+WT{settings.Threads}"));
                }

                return arguments;
            }

            IReadOnlyList<Command> RenderTo(int frame, string prefix, string destination, string format, IEnumerable<string> extra) =>
            [
                new Command(povray, [.. Arguments(frame, prefix, format), .. extra]),
                new Command(tools, ["move", prefix + "*." + format, destination]),
            ];

            return FrameTaskLayout.Create(new FrameTaskRequest
            {
                Settings = settings,
                Frames = frames,
                Size = size,
                Host = HostName,
                OutputOf = frame => outputByFrame[frame],
                FarmToolsExecutable = tools,
                FullSizeTiles = true,
                // A window render writes a full-size image: as run-length TGA (+FC) its unrendered part costs almost
                // nothing, where PNG compresses all of it (~0.4 s per 1080p tile, ~1.5 s at 4K).
                TileExtension = "tga",
                RenderChunk = chunk =>
                    [.. chunk.SelectMany(frame => RenderTo(frame, $".farm-frame-{FrameTaskLayout.FrameId(frame)}-", outputByFrame[frame], "png", []))],
                RenderTile = (frame, tile, tilePath) => RenderTo(
                    frame,
                    $".farm-tile-{FrameTaskLayout.FrameId(frame)}-t{tile.Name}-",
                    tilePath,
                    "tga",
                    [
                        Invariant($"+SR{tile.Y + 1}"),
                        Invariant($"+ER{tile.Y + tile.Height}"),
                        Invariant($"+SC{tile.X + 1}"),
                        Invariant($"+EC{tile.X + tile.Width}"),
                    ]),
            });
        });
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    /// <summary>The <c>Library_Path</c> entries of a <c>povray.ini</c> in the scene's folder (POV-Ray reads it from the working folder).</summary>
    private static async Task<IReadOnlyList<string>> ReadIniLibraryPathsAsync(string sceneDirectory, CancellationToken cancellationToken)
    {
        var ini = Path.Combine(sceneDirectory, "povray.ini");
        if (!File.Exists(ini))
        {
            return [];
        }

        var paths = new List<string>();
        foreach (var line in await File.ReadAllLinesAsync(ini, cancellationToken).ConfigureAwait(false))
        {
            var trimmed = line.Trim();
            if (trimmed.StartsWith("Library_Path", StringComparison.OrdinalIgnoreCase) && trimmed.IndexOf('=', StringComparison.Ordinal) is var eq and > 0)
            {
                paths.Add(Path.GetFullPath(trimmed[(eq + 1)..].Trim().Trim('"'), sceneDirectory));
            }
            else if (trimmed.StartsWith("+L", StringComparison.Ordinal))
            {
                paths.Add(Path.GetFullPath(trimmed[2..].Trim().Trim('"'), sceneDirectory));
            }
        }

        return paths;
    }
}

using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization;
using FarmApi;

namespace FarmPlugins.Hosts.Blender;

/// <summary>
/// The Blender (3.x, <c>blender -b</c>) host adapter. Dependencies are collected by asking Blender itself (a Python
/// script run headless writes them as JSON); files outside the scene's folder or referenced by absolute paths are
/// staged under <c>_ext/&lt;n&gt;/</c> and remapped by a setup script every task runs before rendering. Tiles are
/// border renders cropped to the tile, with dithering off. Every Blender command passes
/// <c>--python-exit-code 1</c>, so a Python error fails the task.
/// </summary>
public sealed class BlenderHostAdapter : IHostAdapter
{
    /// <summary>The host name: the installation the tasks need.</summary>
    public const string HostName = "blender";

    /// <summary>Where the setup script lands in the job folder.</summary>
    public const string SetupScriptPath = ".farm/farm_setup.py";

    /// <summary>Runs the staged setup script from the real working folder (the script opens the scene).</summary>
    private const string SetupExpression =
        "import os; exec(compile(open(os.path.join(os.getcwd(), '.farm', 'farm_setup.py')).read(), 'farm_setup.py', 'exec'))";

    private readonly BlenderOptions _options;

    /// <summary>Makes the adapter.</summary>
    /// <param name="options">The workstation's Blender and limits; validated here.</param>
    public BlenderHostAdapter(BlenderOptions? options = null)
    {
        _options = options ?? new BlenderOptions();
        _options.Validate();
    }

    /// <inheritdoc/>
    public string Name => HostName;

    /// <inheritdoc/>
    public IReadOnlyList<string> Extensions { get; } = [".blend"];

    /// <inheritdoc/>
    public async Task<RenderPlan> PlanAsync(string scenePath, RenderSettings settings, CancellationToken cancellationToken = default)
    {
        HostAdapterArguments.Validate(scenePath, settings);

        if (settings.Frames?.FirstOrDefault(f => f < 0) is int negative and < 0)
        {
            throw new ArgumentException($"frames: Blender cannot render negative frame {negative} (its command line reads '-N' as relative).", nameof(settings));
        }

        var scene = Path.GetFullPath(scenePath);
        var sceneDirectory = Path.GetDirectoryName(scene)!;
        var staging = _options.StagingDirectory ?? Path.Combine(Path.GetTempPath(), "farm-blender-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(staging);
        var info = await CollectAsync(scene, staging, cancellationToken).ConfigureAwait(false);

        var sceneRelative = Path.GetFileName(scene);
        var files = new List<RenderFile> { new(scene, sceneRelative) };
        var remap = new Dictionary<string, Dictionary<string, string>>();
        var placed = new Dictionary<string, string>(StringComparer.Ordinal);
        var external = 0;
        foreach (var item in info.Items)
        {
            if (!File.Exists(item.Path))
            {
                throw new SceneException($"cannot find {item.Kind} '{item.Written}' (data-block '{item.Name}', resolved to {item.Path})", sceneRelative);
            }

            if (!placed.TryGetValue(item.Path, out var relative))
            {
                relative = Path.GetRelativePath(sceneDirectory, item.Path).Replace('\\', '/');
                if (Path.IsPathRooted(relative) || !JobPaths.IsSafe(relative))
                {
                    external++;
                    relative = $"_ext/{external}/{Path.GetFileName(item.Path)}";
                }

                placed[item.Path] = relative;
                files.Add(new RenderFile(item.Path, relative));
            }

            var wanted = "//" + relative;
            if (item.Written.Replace('\\', '/') != wanted && item.Library is null)
            {
                if (!remap.TryGetValue(item.Kind, out var moves))
                {
                    remap[item.Kind] = moves = [];
                }

                moves[item.Name] = wanted;
            }
            else if (item.Written.Replace('\\', '/') != wanted)
            {
                throw new SceneException(
                    $"{item.Kind} '{item.Written}' of linked library '{item.Library}' is outside the scene folder; make it relative to the library inside the scene folder",
                    sceneRelative);
            }
        }

        foreach (var cacheFolder in new[] { "blendcache_" + Path.GetFileNameWithoutExtension(scene) })
        {
            var folder = Path.Combine(sceneDirectory, cacheFolder);
            if (Directory.Exists(folder))
            {
                files.AddRange(Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories)
                    .Select(f => new RenderFile(f, Path.GetRelativePath(sceneDirectory, f).Replace('\\', '/'))));
            }
        }

        var setupScript = Path.Combine(staging, "farm_setup.py");
        var template = await ReadScriptAsync("farm_setup.py", cancellationToken).ConfigureAwait(false);
        await File.WriteAllTextAsync(setupScript, template.Replace("__REMAP__", JsonSerializer.Serialize(remap), StringComparison.Ordinal), cancellationToken).ConfigureAwait(false);
        files.Add(new RenderFile(setupScript, SetupScriptPath));

        var size = settings.Size ?? new ImageSize(
            Math.Max(1, info.Resolution[0] * info.Resolution[2] / 100),
            Math.Max(1, info.Resolution[1] * info.Resolution[2] / 100));
        if (settings.Tiles.Columns > size.Width || settings.Tiles.Rows > size.Height)
        {
            throw new ArgumentException($"tiles: {settings.Tiles} has more tiles than pixels in {size}.", nameof(settings));
        }

        var frames = settings.Frames ?? FrameList.Of([info.FrameCurrent]);
        var sceneName = Path.GetFileNameWithoutExtension(scene);
        var outputs = frames.Select(f => new FrameOutput(f, OutputNaming.Format(settings.OutputPattern, sceneName, f))).ToList();
        var outputByFrame = outputs.ToDictionary(o => o.Frame, o => o.Path);
        var outputPrefix = "//" + BlenderPattern(settings.OutputPattern ?? RenderSettings.DefaultOutputPattern, sceneName);
        string[] hosts = settings.Tiles.IsTiled ? [HostName, FarmTools.HostName] : [HostName];

        return new RenderPlan(sceneRelative, files, hosts, outputs, size, installations =>
        {
            var blender = installations[HostName].Executable;
            var tools = installations.TryGetValue(FarmTools.HostName, out var t) ? t.Executable : FarmTools.ExecutableName;

            Command Render(string output, string frameList, IEnumerable<string> extra)
            {
                var arguments = new List<string>
                {
                    "-b",
                    "--python-exit-code", "1",
                    "--python-expr", SetupExpression,
                    "-o", output, "-F", "PNG", "-x", "1",
                };
                if (settings.Threads > 0)
                {
                    arguments.AddRange(["-t", settings.Threads.ToString(CultureInfo.InvariantCulture)]);
                }

                arguments.AddRange(["-f", frameList, "--", "--farm-scene", sceneRelative, "--farm-size", size.ToString()]);
                arguments.AddRange(extra);
                return new Command(blender, arguments);
            }

            return FrameTaskLayout.Create(new FrameTaskRequest
            {
                Settings = settings,
                Frames = frames,
                Size = size,
                Host = HostName,
                OutputOf = frame => outputByFrame[frame],
                FarmToolsExecutable = tools,
                FullSizeTiles = false,
                RenderChunk = chunk => [Render(outputPrefix, string.Join(',', chunk.Select(f => f.ToString(CultureInfo.InvariantCulture))), [])],
                RenderTile = (frame, tile, tilePath) =>
                {
                    // Blender truncates border * resolution; a quarter-pixel nudge keeps float error on the right pixel.
                    var border = string.Join(',', new[]
                    {
                        (tile.X + 0.25) / size.Width,
                        Math.Min(1.0, (tile.X + tile.Width + 0.25) / size.Width),
                        (size.Height - tile.Y - tile.Height + 0.25) / size.Height,
                        Math.Min(1.0, (size.Height - tile.Y + 0.25) / size.Height),
                    }.Select(v => v.ToString("R", CultureInfo.InvariantCulture)));
                    var tileOutput = "//" + tilePath[..^".png".Length].Replace(FrameTaskLayout.FrameId(frame), "f####", StringComparison.Ordinal);
                    return [Render(tileOutput, frame.ToString(CultureInfo.InvariantCulture), ["--farm-border", border])];
                },
            });
        });
    }

    /// <summary>The output pattern as Blender's <c>-o</c> wants it: no extension (<c>-x 1</c> adds it), <c>#</c> kept.</summary>
    private static string BlenderPattern(string pattern, string sceneName) =>
        pattern.Replace("<scene>", sceneName, StringComparison.Ordinal)[..^".png".Length];

    private async Task<CollectResult> CollectAsync(string scene, string staging, CancellationToken cancellationToken)
    {
        var script = Path.Combine(staging, "farm_collect.py");
        await File.WriteAllTextAsync(script, await ReadScriptAsync("farm_collect.py", cancellationToken).ConfigureAwait(false), cancellationToken).ConfigureAwait(false);
        var json = Path.Combine(staging, "collect.json");
        var start = new ProcessStartInfo(_options.Executable)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in new[] { "-b", "--factory-startup", scene, "--python-exit-code", "1", "--python", script, "--", json })
        {
            start.ArgumentList.Add(argument);
        }

        Process process;
        try
        {
            process = Process.Start(start) ?? throw new SceneException($"could not start {_options.Executable}", scene);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new SceneException($"could not run Blender ('{_options.Executable}') to collect dependencies: {e.Message}", scene, innerException: e);
        }

        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync(cancellationToken);
            var stderr = process.StandardError.ReadToEndAsync(cancellationToken);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(_options.CollectTimeout);
            try
            {
                await process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                cancellationToken.ThrowIfCancellationRequested();
                throw new SceneException($"Blender took longer than {_options.CollectTimeout.TotalSeconds:0} s to list the scene's dependencies", scene);
            }

            var output = await stdout.ConfigureAwait(false) + await stderr.ConfigureAwait(false);
            if (process.ExitCode != 0 || !File.Exists(json))
            {
                var tail = string.Join('\n', output.Split('\n').TakeLast(8));
                throw new SceneException($"Blender could not read the scene (exit {process.ExitCode}): {tail.Trim()}", scene);
            }
        }

        await using var stream = File.OpenRead(json);
        return await JsonSerializer.DeserializeAsync<CollectResult>(stream, JsonOptions, cancellationToken).ConfigureAwait(false)
            ?? throw new SceneException("Blender wrote no dependency list", scene);
    }

    private static async Task<string> ReadScriptAsync(string name, CancellationToken cancellationToken)
    {
        await using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream(name)
            ?? throw new InvalidOperationException($"The embedded script {name} is missing.");
        using var reader = new StreamReader(stream);
        return await reader.ReadToEndAsync(cancellationToken).ConfigureAwait(false);
    }

    private static readonly JsonSerializerOptions JsonOptions = new() { PropertyNameCaseInsensitive = true };

    private sealed record CollectResult(
        [property: JsonPropertyName("blend")] string Blend,
        [property: JsonPropertyName("scene")] string Scene,
        [property: JsonPropertyName("engine")] string Engine,
        [property: JsonPropertyName("resolution")] int[] Resolution,
        [property: JsonPropertyName("frameStart")] int FrameStart,
        [property: JsonPropertyName("frameEnd")] int FrameEnd,
        [property: JsonPropertyName("frameCurrent")] int FrameCurrent,
        [property: JsonPropertyName("items")] IReadOnlyList<CollectedItem> Items);

    private sealed record CollectedItem(
        [property: JsonPropertyName("kind")] string Kind,
        [property: JsonPropertyName("name")] string Name,
        [property: JsonPropertyName("written")] string Written,
        [property: JsonPropertyName("path")] string Path,
        [property: JsonPropertyName("library")] string? Library);
}

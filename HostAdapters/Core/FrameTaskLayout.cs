using System.Globalization;
using FarmApi;

namespace FarmPlugins.Hosts;

/// <summary>
/// The task layout every host adapter shares: one task per chunk of frames, or with tiles one task per tile of each
/// frame plus one merge task per frame (on <c>farm-tools</c>) that depends on its tiles. Ids: <c>f0012</c>,
/// <c>f0001_0004</c> (a chunk), <c>f0012-t1x0</c>, <c>merge-f0012</c>. Labels: <c>frame</c>, <c>tile</c>.
/// </summary>
public static class FrameTaskLayout
{
    /// <summary>Where a tile image goes in the job folder.</summary>
    /// <param name="frame">The frame.</param>
    /// <param name="tile">The tile.</param>
    /// <param name="extension">The tile image's extension: <c>png</c>, or <c>tga</c> (POV-Ray's quick run-length TGA).</param>
    /// <returns>For example <c>.farm/tiles/f0012-t1x0.png</c>.</returns>
    public static string TilePath(int frame, TileWindow tile, string extension = "png") => $".farm/tiles/{FrameId(frame)}-t{tile.Name}.{extension}";

    /// <summary>The task id of one frame: <c>f0012</c>, <c>f-0003</c>.</summary>
    /// <param name="frame">The frame.</param>
    /// <returns>The id.</returns>
    public static string FrameId(int frame) => "f" + OutputNaming.FormatFrame(frame);

    /// <summary>The task id of a chunk: <c>f0012</c> for one frame, <c>f0001_0004</c> for several.</summary>
    /// <param name="chunk">The chunk.</param>
    /// <returns>The id.</returns>
    public static string ChunkId(FrameList chunk)
    {
        ArgumentNullException.ThrowIfNull(chunk);
        return chunk.Count == 1 ? FrameId(chunk[0]) : $"{FrameId(chunk[0])}_{OutputNaming.FormatFrame(chunk[^1])}";
    }

    /// <summary>Makes the tasks of a render.</summary>
    /// <param name="request">What to lay out.</param>
    /// <returns>Render tasks, then merge tasks.</returns>
    public static IReadOnlyList<TaskSpec> Create(FrameTaskRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var tasks = new List<TaskSpec>();
        if (!request.Settings.Tiles.IsTiled)
        {
            foreach (var chunk in request.Frames.Chunk(request.Settings.Chunk))
            {
                var outputs = chunk.Select(request.OutputOf).ToList();
                tasks.Add(new TaskSpec(
                    ChunkId(chunk),
                    request.RenderChunk(chunk),
                    Outputs: outputs,
                    Host: request.Host,
                    Timeout: request.Settings.TaskTimeout,
                    Labels: new Dictionary<string, string> { ["frame"] = chunk.ToString() }));
            }

            return tasks;
        }

        var windows = request.Settings.Tiles.Split(request.Size);
        var merges = new List<TaskSpec>();
        foreach (var frame in request.Frames)
        {
            var frameText = frame.ToString(CultureInfo.InvariantCulture);
            var tileIds = new List<string>();
            var mergeArguments = new List<string>
            {
                "merge", "--out", request.OutputOf(frame), "--size", request.Size.ToString(),
            };
            if (request.FullSizeTiles)
            {
                mergeArguments.Add("--full-size-tiles");
            }

            foreach (var window in windows)
            {
                var id = $"{FrameId(frame)}-t{window.Name}";
                var tilePath = TilePath(frame, window, request.TileExtension);
                tileIds.Add(id);
                tasks.Add(new TaskSpec(
                    id,
                    request.RenderTile(frame, window, tilePath),
                    Host: request.Host,
                    Timeout: request.Settings.TaskTimeout,
                    Labels: new Dictionary<string, string> { ["frame"] = frameText, ["tile"] = window.Name }));
                mergeArguments.Add("--tile");
                mergeArguments.Add(string.Create(CultureInfo.InvariantCulture, $"{tilePath}@{window.X},{window.Y},{window.Width},{window.Height}"));
            }

            merges.Add(new TaskSpec(
                $"merge-{FrameId(frame)}",
                [new Command(request.FarmToolsExecutable, mergeArguments)],
                DependsOn: tileIds,
                Outputs: [request.OutputOf(frame)],
                Host: FarmTools.HostName,
                Timeout: request.Settings.TaskTimeout,
                Labels: new Dictionary<string, string> { ["frame"] = frameText, ["tile"] = "merge" }));
        }

        tasks.AddRange(merges);
        return tasks;
    }
}

/// <summary>What <see cref="FrameTaskLayout.Create"/> lays out.</summary>
public sealed record FrameTaskRequest
{
    /// <summary>The render settings (chunk, tiles, timeout).</summary>
    public required RenderSettings Settings { get; init; }

    /// <summary>The frames.</summary>
    public required FrameList Frames { get; init; }

    /// <summary>The image size (for the tile windows and the merge).</summary>
    public required ImageSize Size { get; init; }

    /// <summary>The host the render tasks need: <c>povray</c>.</summary>
    public required string Host { get; init; }

    /// <summary>The relative output path of a frame.</summary>
    public required Func<int, string> OutputOf { get; init; }

    /// <summary>The commands that render a chunk of frames to their outputs.</summary>
    public required Func<FrameList, IReadOnlyList<Command>> RenderChunk { get; init; }

    /// <summary>The commands that render one tile of one frame to the given relative path.</summary>
    public required Func<int, TileWindow, string, IReadOnlyList<Command>> RenderTile { get; init; }

    /// <summary>The node-side <c>farm-tools</c> executable (used when tiled).</summary>
    public string FarmToolsExecutable { get; init; } = FarmTools.ExecutableName;

    /// <summary>The tile images' format, as their extension: <c>png</c> (the default) or <c>tga</c>; <c>farm-tools merge</c> reads both.</summary>
    public string TileExtension { get; init; } = "png";

    /// <summary>Whether tile images are full-size with only the window rendered (POV-Ray) rather than tile-sized (Blender crop).</summary>
    public bool FullSizeTiles { get; init; }
}

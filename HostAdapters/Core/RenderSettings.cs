using System.Globalization;
using FarmApi;

namespace FarmPlugins.Hosts;

/// <summary>The render settings every host adapter accepts.</summary>
public sealed record RenderSettings
{
    /// <summary>The output pattern used when none is given: the scene's name, an underscore, a 4-digit frame.</summary>
    public const string DefaultOutputPattern = "<scene>_####.png";

    /// <summary>The frames to render; null: the scene's own frame (frame 1 for POV-Ray, the current frame for Blender).</summary>
    public FrameList? Frames { get; init; }

    /// <summary>Frames per task, at least 1 (ignored with tiles: each tile of each frame is a task).</summary>
    public int Chunk { get; init; } = 1;

    /// <summary>Tiles per frame; <see cref="TileGrid.Single"/> renders whole frames.</summary>
    public TileGrid Tiles { get; init; } = TileGrid.Single;

    /// <summary>The image size, overriding the scene's resolution; null keeps the scene's.</summary>
    public ImageSize? Size { get; init; }

    /// <summary>Antialiasing on or off (POV-Ray <c>+A0.3</c> / <c>-A</c>); off by default.</summary>
    public bool Antialias { get; init; }

    /// <summary>Render threads per task; 0 lets the renderer decide.</summary>
    public int Threads { get; init; }

    /// <summary>
    /// Where each frame goes, relative to the output folder: <c>&lt;scene&gt;</c> is the scene's name, a run of <c>#</c> the
    /// zero-padded frame number. Null: <see cref="DefaultOutputPattern"/>.
    /// </summary>
    public string? OutputPattern { get; init; }

    /// <summary>Disk (frames written and fetched back) or Preview (one frame handed back, not kept on the farm).</summary>
    public RenderType Type { get; init; } = RenderType.Disk;

    /// <summary>The time one attempt of one task may take; null: no limit.</summary>
    public TimeSpan? TaskTimeout { get; init; }

    /// <summary>Checks the settings that do not depend on the host; one message names every bad setting.</summary>
    /// <exception cref="ArgumentException">A setting is invalid.</exception>
    public void Validate()
    {
        var errors = new List<string>();
        if (Chunk < 1)
        {
            errors.Add($"chunk: {Chunk} is not a positive number of frames per task");
        }

        if (Threads < 0)
        {
            errors.Add($"threads: {Threads} is negative");
        }

        if (TaskTimeout is { } timeout && timeout <= TimeSpan.Zero)
        {
            errors.Add("timeout: must be positive");
        }

        if (Type == RenderType.Live)
        {
            errors.Add("type: Live renders are not supported by host adapters; use Disk or Preview");
        }

        if (Type == RenderType.Preview && Frames is { Count: > 1 })
        {
            errors.Add($"frames: a Preview render is one frame, not {Frames.Count}");
        }

        if (Tiles.Columns < 1 || Tiles.Rows < 1)
        {
            errors.Add($"tiles: {Tiles} needs at least one column and one row");
        }

        if (Size is { } size && (size.Width < 1 || size.Height < 1))
        {
            errors.Add($"size: {size} must be at least 1x1");
        }

        if (Size is { } s && (Tiles.Columns > s.Width || Tiles.Rows > s.Height))
        {
            errors.Add($"tiles: {Tiles} has more tiles than pixels in {s}");
        }

        var patternError = OutputNaming.Check(OutputPattern ?? DefaultOutputPattern);
        if (patternError is not null)
        {
            errors.Add($"output: {patternError}");
        }

        if (errors.Count > 0)
        {
            throw new ArgumentException("Invalid render settings: " + string.Join("; ", errors) + ".");
        }
    }
}

/// <summary>A tile grid: <c>C</c> columns by <c>R</c> rows, written <c>CxR</c>.</summary>
/// <param name="Columns">Columns, at least 1.</param>
/// <param name="Rows">Rows, at least 1.</param>
public readonly record struct TileGrid(int Columns, int Rows)
{
    /// <summary>One tile: the whole frame.</summary>
    public static TileGrid Single => new(1, 1);

    /// <summary>Whether the frame is split at all.</summary>
    public bool IsTiled => Columns * Rows > 1;

    /// <summary>Parses <c>CxR</c>, for example <c>2x2</c>.</summary>
    /// <param name="text">The text.</param>
    /// <returns>The grid.</returns>
    /// <exception cref="ArgumentException">Not <c>CxR</c> with C and R at least 1 (names <c>tiles</c>).</exception>
    public static TileGrid Parse(string text)
    {
        var (a, b) = Dimensions.Parse(text, "tiles", "columns x rows, for example 2x2");
        return new TileGrid(a, b);
    }

    /// <summary>The windows of an image of <paramref name="size"/>, row by row from the top left.</summary>
    /// <param name="size">The image size.</param>
    /// <returns>The tiles; together they cover every pixel once.</returns>
    public IReadOnlyList<TileWindow> Split(ImageSize size)
    {
        var tiles = new List<TileWindow>(Columns * Rows);
        for (var row = 0; row < Rows; row++)
        {
            var y0 = (int)((long)size.Height * row / Rows);
            var y1 = (int)((long)size.Height * (row + 1) / Rows);
            for (var column = 0; column < Columns; column++)
            {
                var x0 = (int)((long)size.Width * column / Columns);
                var x1 = (int)((long)size.Width * (column + 1) / Columns);
                tiles.Add(new TileWindow(column, row, x0, y0, x1 - x0, y1 - y0));
            }
        }

        return tiles;
    }

    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Columns}x{Rows}");
}

/// <summary>One tile of a frame, in pixels from the top left.</summary>
/// <param name="Column">Its column, from 0.</param>
/// <param name="Row">Its row from the top, from 0.</param>
/// <param name="X">Its left pixel.</param>
/// <param name="Y">Its top pixel.</param>
/// <param name="Width">Its width.</param>
/// <param name="Height">Its height.</param>
public readonly record struct TileWindow(int Column, int Row, int X, int Y, int Width, int Height)
{
    /// <summary>The tile's name in task ids and labels: <c>CxR</c>, for example <c>1x0</c>.</summary>
    public string Name => string.Create(CultureInfo.InvariantCulture, $"{Column}x{Row}");
}

/// <summary>An image size, written <c>WxH</c>.</summary>
/// <param name="Width">Pixels across.</param>
/// <param name="Height">Pixels down.</param>
public readonly record struct ImageSize(int Width, int Height)
{
    /// <summary>Parses <c>WxH</c>, for example <c>320x180</c>.</summary>
    /// <param name="text">The text.</param>
    /// <returns>The size.</returns>
    /// <exception cref="ArgumentException">Not <c>WxH</c> with both at least 1 (names <c>size</c>).</exception>
    public static ImageSize Parse(string text)
    {
        var (a, b) = Dimensions.Parse(text, "size", "width x height in pixels, for example 320x180");
        return new ImageSize(a, b);
    }

    /// <inheritdoc/>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Width}x{Height}");
}

internal static class Dimensions
{
    public static (int First, int Second) Parse(string? text, string setting, string expected)
    {
        var parts = (text ?? string.Empty).Trim().Split('x', 'X', '×');
        if (parts.Length == 2
            && int.TryParse(parts[0].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var first)
            && int.TryParse(parts[1].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var second))
        {
            if (first >= 1 && second >= 1 && first <= 65535 && second <= 65535)
            {
                return (first, second);
            }

            throw new ArgumentException($"{setting}: '{text}' must have both numbers between 1 and 65535 ({expected}).", setting);
        }

        throw new ArgumentException($"{setting}: '{text}' is not {expected}.", setting);
    }
}

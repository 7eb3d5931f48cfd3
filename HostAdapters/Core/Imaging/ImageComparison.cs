namespace FarmPlugins.Hosts.Imaging;

/// <summary>Compares images: pixel equality and PSNR.</summary>
public static class ImageComparison
{
    /// <summary>
    /// The peak signal-to-noise ratio of <paramref name="b"/> against <paramref name="a"/> in dB, over the colour
    /// channels normalised to 0..1 (alpha included when both have it); <see cref="double.PositiveInfinity"/> when equal.
    /// </summary>
    /// <param name="a">The reference.</param>
    /// <param name="b">The image compared.</param>
    /// <returns>The PSNR in dB.</returns>
    /// <exception cref="ArgumentException">The sizes differ.</exception>
    public static double Psnr(PngImage a, PngImage b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        RequireSameSize(a, b);
        var channels = (a.Channels is 2 or 4) && (b.Channels is 2 or 4) ? 4 : 3;
        var left = a.ConvertTo(channels, 16);
        var right = b.ConvertTo(channels, 16);
        double sum = 0;
        for (var y = 0; y < a.Height; y++)
        {
            for (var x = 0; x < a.Width; x++)
            {
                for (var c = 0; c < channels; c++)
                {
                    var d = (left.Get(x, y, c) - right.Get(x, y, c)) / 65535.0;
                    sum += d * d;
                }
            }
        }

        var mse = sum / ((double)a.Width * a.Height * channels);
        return mse == 0 ? double.PositiveInfinity : 10 * Math.Log10(1 / mse);
    }

    /// <summary>How many pixels differ in any channel (after converting both to the richer format).</summary>
    /// <param name="a">One image.</param>
    /// <param name="b">The other.</param>
    /// <returns>The count; 0 when the pixels are identical.</returns>
    public static int CountDifferentPixels(PngImage a, PngImage b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        RequireSameSize(a, b);
        var channels = Math.Max(a.Channels, b.Channels);
        channels = channels == 2 && (a.Channels == 3 || b.Channels == 3) ? 4 : channels;
        var depth = Math.Max(a.BitDepth, b.BitDepth);
        var left = a.ConvertTo(channels, depth);
        var right = b.ConvertTo(channels, depth);
        var count = 0;
        for (var y = 0; y < a.Height; y++)
        {
            for (var x = 0; x < a.Width; x++)
            {
                for (var c = 0; c < channels; c++)
                {
                    if (left.Get(x, y, c) != right.Get(x, y, c))
                    {
                        count++;
                        break;
                    }
                }
            }
        }

        return count;
    }

    private static void RequireSameSize(PngImage a, PngImage b)
    {
        if (a.Width != b.Width || a.Height != b.Height)
        {
            throw new ArgumentException($"The images differ in size: {a.Width}x{a.Height} and {b.Width}x{b.Height}.");
        }
    }
}

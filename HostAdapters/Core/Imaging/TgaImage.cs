using System.Buffers.Binary;

namespace FarmPlugins.Hosts.Imaging;

/// <summary>
/// A Truevision TGA reader for tile images: uncompressed (type 2) and run-length encoded (type 10) true colour with 24
/// or 32 bits per pixel, and grey (types 3 and 11) with 8, in either row order. POV-Ray's <c>+FC</c> writes type 10
/// (top-left origin, BGR): quick to write, and the unrendered part of a window render costs almost nothing.
/// </summary>
public static class TgaImage
{
    private const int HeaderLength = 18;

    /// <summary>Whether <paramref name="bytes"/> look like a TGA file this reader understands (TGA has no signature: the header is checked).</summary>
    /// <param name="bytes">The file's bytes.</param>
    /// <returns><see langword="true"/> when the header is a supported TGA header.</returns>
    public static bool IsTga(ReadOnlySpan<byte> bytes)
    {
        try
        {
            _ = ReadHeader(bytes);
            return true;
        }
        catch (InvalidDataException)
        {
            return false;
        }
    }

    /// <summary>The size a TGA declares in its header.</summary>
    /// <param name="tga">The file's bytes.</param>
    /// <returns>Width and height.</returns>
    /// <exception cref="InvalidDataException">Not a TGA this reader understands.</exception>
    public static (int Width, int Height) ReadSize(ReadOnlySpan<byte> tga)
    {
        var header = ReadHeader(tga);
        return (header.Width, header.Height);
    }

    /// <summary>Decodes the whole image.</summary>
    /// <param name="tga">The file's bytes.</param>
    /// <returns>An 8-bit image: gray, RGB or RGBA.</returns>
    /// <exception cref="InvalidDataException">Not a TGA this reader understands, or cut short.</exception>
    public static PngImage Decode(ReadOnlySpan<byte> tga)
    {
        var (width, height) = ReadSize(tga);
        return DecodeWindow(tga, 0, 0, width, height);
    }

    /// <summary>Decodes one window of the image (a tile of a full-size window render) without the rest.</summary>
    /// <param name="tga">The file's bytes.</param>
    /// <param name="x">The window's left column.</param>
    /// <param name="y">The window's top row (from the top, whatever the file's row order).</param>
    /// <param name="width">The window's width.</param>
    /// <param name="height">The window's height.</param>
    /// <returns>An 8-bit image of the window: gray, RGB or RGBA.</returns>
    /// <exception cref="InvalidDataException">Not a TGA this reader understands, or cut short.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The window is not inside the image.</exception>
    public static PngImage DecodeWindow(ReadOnlySpan<byte> tga, int x, int y, int width, int height)
    {
        var header = ReadHeader(tga);
        ArgumentOutOfRangeException.ThrowIfNegative(x);
        ArgumentOutOfRangeException.ThrowIfNegative(y);
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 1);
        if (x + width > header.Width || y + height > header.Height)
        {
            throw new ArgumentOutOfRangeException(nameof(width), $"The window {x},{y},{width},{height} is not inside the {header.Width}x{header.Height} image.");
        }

        var bpp = header.BitsPerPixel / 8;
        var channels = bpp == 1 ? 1 : bpp;
        var image = new PngImage(width, height, channels);
        var output = image.Data;
        var data = tga[header.DataOffset..];
        // File rows in file order: with a bottom-left origin the first file row is the image's last.
        var fileRowsNeeded = header.TopOrigin ? y + height : header.Height - y;
        var rowBytes = header.Width * bpp;
        var pixel = new byte[bpp];
        var position = 0;
        if (!header.RunLength)
        {
            if (data.Length < (long)fileRowsNeeded * rowBytes)
            {
                throw new InvalidDataException($"the TGA file is cut short: {data.Length} bytes of pixels, {(long)header.Height * rowBytes} expected");
            }

            for (var row = 0; row < height; row++)
            {
                var sourceRow = header.TopOrigin ? y + row : header.Height - 1 - (y + row);
                CopyPixels(data.Slice((sourceRow * rowBytes) + (x * bpp), width * bpp), output.AsSpan(row * width * channels), bpp);
            }

            return image;
        }

        // Run-length packets may cross rows: each packet is walked a row segment at a time, and only the part of a
        // segment inside the window is copied (a window render's tile is mostly outside its window).
        var total = (long)fileRowsNeeded * header.Width;
        long index = 0;
        int fileRow = 0, column = 0;
        while (index < total)
        {
            if (position >= data.Length)
            {
                throw new InvalidDataException("the TGA file is cut short (its run-length data ends early)");
            }

            var packet = data[position++];
            var count = (packet & 0x7F) + 1;
            var repeated = (packet & 0x80) != 0;
            var needed = repeated ? bpp : count * bpp;
            if (position + needed > data.Length)
            {
                throw new InvalidDataException("the TGA file is cut short (a run-length packet ends early)");
            }

            var done = 0;
            while (done < count && index < total)
            {
                var segment = Math.Min(count - done, header.Width - column);
                var row = header.TopOrigin ? fileRow - y : header.Height - 1 - fileRow - y;
                var from = Math.Max(column, x);
                var to = Math.Min(column + segment, x + width);
                if (row >= 0 && row < height && from < to)
                {
                    var target = output.AsSpan(((row * width) + from - x) * channels, (to - from) * channels);
                    if (repeated)
                    {
                        CopyPixels(data.Slice(position, bpp), target[..channels], bpp);
                        for (var filled = channels; filled < target.Length; filled += channels)
                        {
                            target[..channels].CopyTo(target[filled..]);
                        }
                    }
                    else
                    {
                        CopyPixels(data.Slice(position + ((done + from - column) * bpp), (to - from) * bpp), target, bpp);
                    }
                }

                done += segment;
                index += segment;
                column += segment;
                if (column == header.Width)
                {
                    column = 0;
                    fileRow++;
                }
            }

            position += needed;
        }

        return image;
    }

    /// <summary>BGR(A) or grey file pixels to RGB(A) or grey samples.</summary>
    private static void CopyPixels(ReadOnlySpan<byte> source, Span<byte> target, int bpp)
    {
        if (bpp == 1)
        {
            source.CopyTo(target);
            return;
        }

        for (int s = 0, t = 0; s < source.Length; s += bpp, t += bpp)
        {
            target[t] = source[s + 2];
            target[t + 1] = source[s + 1];
            target[t + 2] = source[s];
            if (bpp == 4)
            {
                target[t + 3] = source[s + 3];
            }
        }
    }

    private readonly record struct Header(int Width, int Height, int BitsPerPixel, bool RunLength, bool TopOrigin, int DataOffset);

    private static Header ReadHeader(ReadOnlySpan<byte> tga)
    {
        if (tga.Length < HeaderLength)
        {
            throw new InvalidDataException("not a TGA file (shorter than its 18-byte header)");
        }

        var idLength = tga[0];
        var colorMapType = tga[1];
        var imageType = tga[2];
        var width = BinaryPrimitives.ReadUInt16LittleEndian(tga[12..]);
        var height = BinaryPrimitives.ReadUInt16LittleEndian(tga[14..]);
        var bits = tga[16];
        var descriptor = tga[17];
        if (colorMapType != 0 || imageType is not (2 or 3 or 10 or 11))
        {
            throw new InvalidDataException($"not a TGA this reader understands (colour map type {colorMapType}, image type {imageType}; true colour or grey only)");
        }

        var grey = imageType is 3 or 11;
        if (grey ? bits != 8 : bits is not (24 or 32))
        {
            throw new InvalidDataException($"not a TGA this reader understands ({bits} bits per pixel for image type {imageType})");
        }

        if (width == 0 || height == 0)
        {
            throw new InvalidDataException("the TGA file declares an empty image");
        }

        if ((descriptor & 0x10) != 0)
        {
            throw new InvalidDataException("not a TGA this reader understands (right-to-left pixel order)");
        }

        return new Header(width, height, bits, imageType >= 9, (descriptor & 0x20) != 0, HeaderLength + idLength);
    }
}

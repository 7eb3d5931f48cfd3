using System.Buffers.Binary;
using System.IO.Compression;

namespace FarmPlugins.Hosts.Imaging;

/// <summary>
/// A decoded image with 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA) channels of 8 or 16 bits, and a PNG reader
/// and writer of our own (no ImageMagick on render nodes). Reads every non-interlaced PNG (gray, RGB, palette,
/// with alpha; 1 to 16 bits); writes 8 or 16-bit gray, gray-alpha, RGB or RGBA.
/// </summary>
public sealed class PngImage
{
    private static readonly byte[] Signature = [137, 80, 78, 71, 13, 10, 26, 10];

    /// <summary>Makes a black (and fully transparent, with alpha) image.</summary>
    /// <param name="width">Pixels across, at least 1.</param>
    /// <param name="height">Pixels down, at least 1.</param>
    /// <param name="channels">1 gray, 2 gray + alpha, 3 RGB, 4 RGBA.</param>
    /// <param name="bitDepth">8 or 16.</param>
    public PngImage(int width, int height, int channels = 3, int bitDepth = 8)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(channels, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(channels, 4);
        if (bitDepth is not (8 or 16))
        {
            throw new ArgumentOutOfRangeException(nameof(bitDepth), bitDepth, "The bit depth is 8 or 16.");
        }

        Width = width;
        Height = height;
        Channels = channels;
        BitDepth = bitDepth;
        Data = new byte[checked(width * height * channels * (bitDepth / 8))];
    }

    /// <summary>Pixels across.</summary>
    public int Width { get; }

    /// <summary>Pixels down.</summary>
    public int Height { get; }

    /// <summary>1 gray, 2 gray + alpha, 3 RGB, 4 RGBA.</summary>
    public int Channels { get; }

    /// <summary>8 or 16 bits per sample.</summary>
    public int BitDepth { get; }

    /// <summary>The samples, row by row from the top, 16-bit samples big-endian.</summary>
    public byte[] Data { get; }

    /// <summary>The largest sample value: 255 or 65535.</summary>
    public int MaxValue => BitDepth == 16 ? 65535 : 255;

    private int BytesPerPixel => Channels * (BitDepth / 8);

    /// <summary>A sample.</summary>
    /// <param name="x">The column.</param>
    /// <param name="y">The row from the top.</param>
    /// <param name="channel">The channel.</param>
    /// <returns>0 to <see cref="MaxValue"/>.</returns>
    public int Get(int x, int y, int channel)
    {
        var at = (((y * Width) + x) * Channels) + channel;
        return BitDepth == 16 ? BinaryPrimitives.ReadUInt16BigEndian(Data.AsSpan(at * 2)) : Data[at];
    }

    /// <summary>Sets a sample.</summary>
    /// <param name="x">The column.</param>
    /// <param name="y">The row from the top.</param>
    /// <param name="channel">The channel.</param>
    /// <param name="value">0 to <see cref="MaxValue"/>.</param>
    public void Set(int x, int y, int channel, int value)
    {
        var at = (((y * Width) + x) * Channels) + channel;
        if (BitDepth == 16)
        {
            BinaryPrimitives.WriteUInt16BigEndian(Data.AsSpan(at * 2), (ushort)value);
        }
        else
        {
            Data[at] = (byte)value;
        }
    }

    /// <summary>A copy of a rectangle of this image.</summary>
    /// <param name="x">Left.</param>
    /// <param name="y">Top.</param>
    /// <param name="width">Width.</param>
    /// <param name="height">Height.</param>
    /// <returns>The rectangle as an image of the same format.</returns>
    public PngImage Crop(int x, int y, int width, int height)
    {
        if (x < 0 || y < 0 || width < 1 || height < 1 || x + width > Width || y + height > Height)
        {
            throw new ArgumentOutOfRangeException(nameof(width), $"The window {x},{y},{width}x{height} is not inside the {Width}x{Height} image.");
        }

        var result = new PngImage(width, height, Channels, BitDepth);
        var rowBytes = width * BytesPerPixel;
        for (var row = 0; row < height; row++)
        {
            Data.AsSpan((((y + row) * Width) + x) * BytesPerPixel, rowBytes).CopyTo(result.Data.AsSpan(row * rowBytes));
        }

        return result;
    }

    /// <summary>Copies <paramref name="source"/> (same channels and depth) into this image at <paramref name="x"/>, <paramref name="y"/>.</summary>
    /// <param name="source">The image to paste.</param>
    /// <param name="x">Left.</param>
    /// <param name="y">Top.</param>
    public void Paste(PngImage source, int x, int y)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (source.Channels != Channels || source.BitDepth != BitDepth)
        {
            source = source.ConvertTo(Channels, BitDepth);
        }

        if (x < 0 || y < 0 || x + source.Width > Width || y + source.Height > Height)
        {
            throw new ArgumentOutOfRangeException(nameof(source), $"A {source.Width}x{source.Height} image at {x},{y} does not fit in {Width}x{Height}.");
        }

        var rowBytes = source.Width * BytesPerPixel;
        for (var row = 0; row < source.Height; row++)
        {
            source.Data.AsSpan(row * rowBytes, rowBytes).CopyTo(Data.AsSpan((((y + row) * Width) + x) * BytesPerPixel));
        }
    }

    /// <summary>This image scaled to <paramref name="width"/> x <paramref name="height"/> (area average; for contact sheets and thumbnails).</summary>
    /// <param name="width">The new width, at least 1.</param>
    /// <param name="height">The new height, at least 1.</param>
    /// <returns>A new image of the same format.</returns>
    public PngImage Resize(int width, int height)
    {
        var result = new PngImage(width, height, Channels, BitDepth);
        for (var y = 0; y < height; y++)
        {
            var y0 = (int)((long)y * Height / height);
            var y1 = Math.Max(y0 + 1, (int)((long)(y + 1) * Height / height));
            for (var x = 0; x < width; x++)
            {
                var x0 = (int)((long)x * Width / width);
                var x1 = Math.Max(x0 + 1, (int)((long)(x + 1) * Width / width));
                for (var c = 0; c < Channels; c++)
                {
                    long sum = 0;
                    for (var sy = y0; sy < y1; sy++)
                    {
                        for (var sx = x0; sx < x1; sx++)
                        {
                            sum += Get(sx, sy, c);
                        }
                    }

                    var count = (long)(x1 - x0) * (y1 - y0);
                    result.Set(x, y, c, (int)((sum + (count / 2)) / count));
                }
            }
        }

        return result;
    }

    /// <summary>This image with other channels or depth (gray ↔ RGB, alpha added opaque or dropped, 8 ↔ 16 bits).</summary>
    /// <param name="channels">1 to 4.</param>
    /// <param name="bitDepth">8 or 16.</param>
    /// <returns>A new image (or this one when nothing changes).</returns>
    public PngImage ConvertTo(int channels, int bitDepth)
    {
        if (channels == Channels && bitDepth == BitDepth)
        {
            return this;
        }

        var result = new PngImage(Width, Height, channels, bitDepth);
        var srcHasAlpha = Channels is 2 or 4;
        var srcColor = Channels >= 3;
        Span<int> rgba = stackalloc int[4];
        for (var y = 0; y < Height; y++)
        {
            for (var x = 0; x < Width; x++)
            {
                for (var c = 0; c < 3; c++)
                {
                    rgba[c] = Scale(Get(x, y, srcColor ? c : 0), BitDepth, bitDepth);
                }

                rgba[3] = srcHasAlpha ? Scale(Get(x, y, Channels - 1), BitDepth, bitDepth) : result.MaxValue;
                switch (channels)
                {
                    case 1:
                        result.Set(x, y, 0, Luma(rgba));
                        break;
                    case 2:
                        result.Set(x, y, 0, Luma(rgba));
                        result.Set(x, y, 1, rgba[3]);
                        break;
                    default:
                        for (var c = 0; c < channels; c++)
                        {
                            result.Set(x, y, c, rgba[c]);
                        }

                        break;
                }
            }
        }

        return result;

        static int Scale(int value, int from, int to) => from == to ? value : (to == 16 ? value * 257 : (value + 128) / 257);

        static int Luma(Span<int> rgba) => (int)Math.Round((0.299 * rgba[0]) + (0.587 * rgba[1]) + (0.114 * rgba[2]));
    }

    /// <summary>Reads a PNG file.</summary>
    /// <param name="path">The file.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The image.</returns>
    /// <exception cref="InvalidDataException">Not a PNG this reader understands (the message says why).</exception>
    public static async Task<PngImage> LoadAsync(string path, CancellationToken cancellationToken = default)
    {
        var bytes = await File.ReadAllBytesAsync(path, cancellationToken).ConfigureAwait(false);
        try
        {
            return Decode(bytes);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{path}: {e.Message}", e);
        }
    }

    /// <summary>Writes the image as a PNG file (its folder is created).</summary>
    /// <param name="path">The file.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns>A task.</returns>
    public Task SaveAsync(string path, CancellationToken cancellationToken = default) => SaveAsync(path, CompressionLevel.Optimal, cancellationToken);

    /// <summary>Writes the image as a PNG file with a chosen zlib level (its folder is created).</summary>
    /// <param name="path">The file.</param>
    /// <param name="compression">The zlib level.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns>A task.</returns>
    public async Task SaveAsync(string path, CompressionLevel compression, CancellationToken cancellationToken = default)
    {
        var folder = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(folder))
        {
            Directory.CreateDirectory(folder);
        }

        // Write next to the target and rename, so a reader never sees half a file.
        var temporary = path + ".partial";
        await File.WriteAllBytesAsync(temporary, Encode(compression), cancellationToken).ConfigureAwait(false);
        File.Move(temporary, path, overwrite: true);
    }

    /// <summary>Decodes PNG bytes.</summary>
    /// <param name="png">The file's bytes.</param>
    /// <returns>The image.</returns>
    /// <exception cref="InvalidDataException">Not a PNG this reader understands.</exception>
    public static PngImage Decode(ReadOnlySpan<byte> png) => Decode(png, int.MaxValue);

    /// <summary>The size a PNG declares in its header, without decoding it.</summary>
    /// <param name="png">The file's bytes (at least the first 24).</param>
    /// <returns>Width and height.</returns>
    /// <exception cref="InvalidDataException">Not a PNG.</exception>
    public static (int Width, int Height) ReadSize(ReadOnlySpan<byte> png)
    {
        if (png.Length < 24 || !png[..8].SequenceEqual(Signature) || !png.Slice(12, 4).SequenceEqual("IHDR"u8))
        {
            throw new InvalidDataException("not a PNG file (bad signature or header)");
        }

        return (BinaryPrimitives.ReadInt32BigEndian(png[16..]), BinaryPrimitives.ReadInt32BigEndian(png[20..]));
    }

    /// <summary>Decodes only the first <paramref name="maxRows"/> rows of a PNG (a window near the top needs no more).</summary>
    /// <param name="png">The file's bytes.</param>
    /// <param name="maxRows">Rows to decode from the top; the image is at most this tall.</param>
    /// <returns>The image (its full width, <c>min(maxRows, height)</c> rows).</returns>
    /// <exception cref="InvalidDataException">Not a PNG this reader understands.</exception>
    public static PngImage Decode(ReadOnlySpan<byte> png, int maxRows)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxRows, 1);
        if (png.Length < 8 || !png[..8].SequenceEqual(Signature))
        {
            throw new InvalidDataException("not a PNG file (bad signature)");
        }

        int width = 0, height = 0, depth = 0, colorType = -1;
        byte[]? palette = null;
        byte[]? paletteAlpha = null;
        using var compressed = new MemoryStream();
        var at = 8;
        var ended = false;
        while (!ended)
        {
            if (at + 12 > png.Length)
            {
                throw new InvalidDataException("the file is truncated");
            }

            var length = BinaryPrimitives.ReadInt32BigEndian(png[at..]);
            if (length < 0 || at + 12 + (long)length > png.Length)
            {
                throw new InvalidDataException("the file is truncated");
            }

            var type = png.Slice(at + 4, 4);
            var data = png.Slice(at + 8, length);
            var crc = BinaryPrimitives.ReadUInt32BigEndian(png[(at + 8 + length)..]);
            if (Crc32(png.Slice(at + 4, length + 4)) != crc)
            {
                throw new InvalidDataException($"chunk {System.Text.Encoding.ASCII.GetString(type)} has a bad CRC");
            }

            switch (System.Text.Encoding.ASCII.GetString(type))
            {
                case "IHDR":
                    width = BinaryPrimitives.ReadInt32BigEndian(data);
                    height = BinaryPrimitives.ReadInt32BigEndian(data[4..]);
                    depth = data[8];
                    colorType = data[9];
                    if (data[12] != 0)
                    {
                        throw new InvalidDataException("interlaced PNGs are not supported");
                    }

                    break;
                case "PLTE":
                    palette = data.ToArray();
                    break;
                case "tRNS":
                    paletteAlpha = data.ToArray();
                    break;
                case "IDAT":
                    compressed.Write(data);
                    break;
                case "IEND":
                    ended = true;
                    break;
                default:
                    break;
            }

            at += 12 + length;
        }

        if (width < 1 || height < 1)
        {
            throw new InvalidDataException("no IHDR chunk");
        }

        var sourceChannels = colorType switch
        {
            0 => 1,
            2 => 3,
            3 => 1,
            4 => 2,
            6 => 4,
            _ => throw new InvalidDataException($"unknown color type {colorType}"),
        };
        if (depth is not (1 or 2 or 4 or 8 or 16) || (sourceChannels > 1 && depth < 8) || (colorType == 3 && depth == 16))
        {
            throw new InvalidDataException($"bit depth {depth} is not valid for color type {colorType}");
        }

        height = Math.Min(height, maxRows);
        var bitsPerPixel = sourceChannels * depth;
        var rowBytes = ((width * bitsPerPixel) + 7) / 8;
        var filterBpp = Math.Max(1, bitsPerPixel / 8);
        var raw = new byte[(rowBytes + 1) * height];
        compressed.Position = 0;
        using (var zlib = new ZLibStream(compressed, CompressionMode.Decompress))
        {
            try
            {
                zlib.ReadExactly(raw);
            }
            catch (EndOfStreamException)
            {
                throw new InvalidDataException("the image data is shorter than the image");
            }
        }

        var rows = new byte[rowBytes * height];
        Unfilter(raw, rows, rowBytes, height, filterBpp);

        if (colorType == 3)
        {
            if (palette is null)
            {
                throw new InvalidDataException("a palette image has no PLTE chunk");
            }

            var hasAlpha = paletteAlpha is not null;
            var image = new PngImage(width, height, hasAlpha ? 4 : 3, 8);
            for (var y = 0; y < height; y++)
            {
                for (var x = 0; x < width; x++)
                {
                    var index = Sample(rows, y * rowBytes, x, depth);
                    if ((index * 3) + 2 >= palette.Length)
                    {
                        throw new InvalidDataException($"palette index {index} is out of range");
                    }

                    for (var c = 0; c < 3; c++)
                    {
                        image.Set(x, y, c, palette[(index * 3) + c]);
                    }

                    if (hasAlpha)
                    {
                        image.Set(x, y, 3, index < paletteAlpha!.Length ? paletteAlpha[index] : 255);
                    }
                }
            }

            return image;
        }

        if (depth < 8)
        {
            var image = new PngImage(width, height, 1, 8);
            var scale = 255 / ((1 << depth) - 1);
            for (var y = 0; y < height; y++)
            {
                for (var x = 0; x < width; x++)
                {
                    image.Set(x, y, 0, Sample(rows, y * rowBytes, x, depth) * scale);
                }
            }

            return image;
        }

        var result = new PngImage(width, height, sourceChannels, depth);
        rows.CopyTo(result.Data, 0);
        return result;
    }

    /// <summary>Encodes the image as PNG bytes (adaptive filters, zlib).</summary>
    /// <param name="compression">The zlib level: <see cref="CompressionLevel.Fastest"/> for speed, <see cref="CompressionLevel.SmallestSize"/> for size.</param>
    /// <returns>The file's bytes.</returns>
    public byte[] Encode(CompressionLevel compression = CompressionLevel.Optimal)
    {
        var rowBytes = Width * BytesPerPixel;
        var bpp = BytesPerPixel;
        var filtered = new byte[(rowBytes + 1) * Height];
        var zero = new byte[rowBytes];
        // Each row's filter is chosen from the unfiltered rows, so rows are filtered in parallel (a merge runs on a
        // node whose cores are otherwise idle by then), each worker with its own two row buffers swapped, not copied.
        Parallel.For(0, Height, () => (Candidate: new byte[rowBytes], Best: new byte[rowBytes]), (y, _, buffers) =>
        {
            var row = Data.AsSpan(y * rowBytes, rowBytes);
            ReadOnlySpan<byte> previous = y == 0 ? zero : Data.AsSpan((y - 1) * rowBytes, rowBytes);
            long bestScore = long.MaxValue;
            byte bestFilter = 0;
            for (byte filter = 0; filter <= 4; filter++)
            {
                Filter(filter, row, previous, buffers.Candidate, bpp);
                long score = 0;
                foreach (var value in buffers.Candidate)
                {
                    score += value < 128 ? value : 256 - value;
                }

                if (score < bestScore)
                {
                    bestScore = score;
                    bestFilter = filter;
                    buffers = (buffers.Best, buffers.Candidate);
                }
            }

            filtered[y * (rowBytes + 1)] = bestFilter;
            buffers.Best.CopyTo(filtered, (y * (rowBytes + 1)) + 1);
            return buffers;
        }, _ => { });

        using var idat = new MemoryStream();
        using (var zlib = new ZLibStream(idat, compression, leaveOpen: true))
        {
            zlib.Write(filtered);
        }

        using var output = new MemoryStream();
        output.Write(Signature);
        var header = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(header, Width);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), Height);
        header[8] = (byte)BitDepth;
        header[9] = Channels switch { 1 => 0, 2 => 4, 3 => 2, _ => 6 };
        WriteChunk(output, "IHDR", header);
        WriteChunk(output, "IDAT", idat.ToArray());
        WriteChunk(output, "IEND", []);
        return output.ToArray();
    }

    private static void Filter(byte filter, ReadOnlySpan<byte> row, ReadOnlySpan<byte> previous, Span<byte> output, int bpp)
    {
        var length = row.Length;
        switch (filter)
        {
            case 0:
                row.CopyTo(output);
                break;
            case 1:
                row[..bpp].CopyTo(output);
                for (var i = bpp; i < length; i++)
                {
                    output[i] = (byte)(row[i] - row[i - bpp]);
                }

                break;
            case 2:
                for (var i = 0; i < length; i++)
                {
                    output[i] = (byte)(row[i] - previous[i]);
                }

                break;
            case 3:
                for (var i = 0; i < bpp; i++)
                {
                    output[i] = (byte)(row[i] - (previous[i] >> 1));
                }

                for (var i = bpp; i < length; i++)
                {
                    output[i] = (byte)(row[i] - ((row[i - bpp] + previous[i]) >> 1));
                }

                break;
            default:
                for (var i = 0; i < bpp; i++)
                {
                    output[i] = (byte)(row[i] - previous[i]);
                }

                for (var i = bpp; i < length; i++)
                {
                    output[i] = (byte)(row[i] - Paeth(row[i - bpp], previous[i], previous[i - bpp]));
                }

                break;
        }
    }

    private static int Sample(byte[] rows, int rowStart, int x, int depth)
    {
        if (depth == 8)
        {
            return rows[rowStart + x];
        }

        var bit = x * depth;
        var value = rows[rowStart + (bit / 8)];
        var shift = 8 - depth - (bit % 8);
        return (value >> shift) & ((1 << depth) - 1);
    }

    private static void Unfilter(byte[] raw, byte[] rows, int rowBytes, int height, int bpp)
    {
        for (var y = 0; y < height; y++)
        {
            var filter = raw[y * (rowBytes + 1)];
            var source = raw.AsSpan((y * (rowBytes + 1)) + 1, rowBytes);
            var target = rows.AsSpan(y * rowBytes, rowBytes);
            var previous = y == 0 ? new byte[rowBytes] : rows.AsSpan((y - 1) * rowBytes, rowBytes);
            switch (filter)
            {
                case 0:
                    source.CopyTo(target);
                    break;
                case 1:
                    source[..bpp].CopyTo(target);
                    for (var i = bpp; i < rowBytes; i++)
                    {
                        target[i] = (byte)(source[i] + target[i - bpp]);
                    }

                    break;
                case 2:
                    for (var i = 0; i < rowBytes; i++)
                    {
                        target[i] = (byte)(source[i] + previous[i]);
                    }

                    break;
                case 3:
                    for (var i = 0; i < bpp; i++)
                    {
                        target[i] = (byte)(source[i] + (previous[i] >> 1));
                    }

                    for (var i = bpp; i < rowBytes; i++)
                    {
                        target[i] = (byte)(source[i] + ((target[i - bpp] + previous[i]) >> 1));
                    }

                    break;
                case 4:
                    for (var i = 0; i < bpp; i++)
                    {
                        target[i] = (byte)(source[i] + previous[i]);
                    }

                    for (var i = bpp; i < rowBytes; i++)
                    {
                        target[i] = (byte)(source[i] + Paeth(target[i - bpp], previous[i], previous[i - bpp]));
                    }

                    break;
                default:
                    throw new InvalidDataException($"row {y} has unknown filter type {filter}");
            }
        }
    }

    private static int Paeth(int a, int b, int c)
    {
        var p = a + b - c;
        var pa = Math.Abs(p - a);
        var pb = Math.Abs(p - b);
        var pc = Math.Abs(p - c);
        return pa <= pb && pa <= pc ? a : (pb <= pc ? b : c);
    }

    private static void WriteChunk(Stream output, string type, byte[] data)
    {
        Span<byte> buffer = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(buffer, data.Length);
        output.Write(buffer);
        var typeAndData = new byte[4 + data.Length];
        System.Text.Encoding.ASCII.GetBytes(type, typeAndData);
        data.CopyTo(typeAndData, 4);
        output.Write(typeAndData);
        BinaryPrimitives.WriteUInt32BigEndian(buffer, Crc32(typeAndData));
        output.Write(buffer);
    }

    private static readonly uint[] CrcTable = MakeCrcTable();

    private static uint[] MakeCrcTable()
    {
        var table = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            var c = n;
            for (var k = 0; k < 8; k++)
            {
                c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            }

            table[n] = c;
        }

        return table;
    }

    private static uint Crc32(ReadOnlySpan<byte> data)
    {
        var crc = 0xFFFFFFFFu;
        foreach (var b in data)
        {
            crc = CrcTable[(crc ^ b) & 0xFF] ^ (crc >> 8);
        }

        return crc ^ 0xFFFFFFFFu;
    }
}
